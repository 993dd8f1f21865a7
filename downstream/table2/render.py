"""Table 2's files: ``table.md``, ``table.csv`` and ``table.tex`` (booktabs), rendered by :mod:`ophora.tables`, and
``accuracy.png`` (:func:`figure`: top-1 and top-5 per classifier and training data with their 95% intervals).

One row per (classifier, training data), columns ``<task> <split> top-1/top-5`` in percent (two decimals; four in
the CSV). A cell is the mean over seeds ``± std`` (two or more seeds) or, with one seed, the value with its 95%
bootstrap interval over the clips; a "+ synthetic" row's cell adds the p-value of the paired bootstrap against
the source row (:mod:`downstream.table2.stats`). Where the config carries the paper's numbers, a ``(paper)`` row
follows each measured row (``illegible`` where the published table cannot be read). The CSV carries every number:
mean, std, both intervals, the difference to the source row with its interval, both tests' p-values and the
published value. An ``n/a`` cell keeps its reason in the notes under the Markdown table and in the CSV's ``note``.
The notes also say, per classifier, the seconds one sample's window spans and covers on each data source (real
training clips, each row's synthetic clips, val and test: :func:`window_notes`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.report import write_report
from downstream.table2.config import METRICS, SPLITS, Table2Config, column_key
from ophora.tables import Column, Table, write_tables

__all__ = ["table_frame", "table", "render", "notes", "window_notes", "figure", "figure_bars", "CSV_SUFFIXES",
           "FIGURE_NAME"]

ILLEGIBLE = "illegible"
FIGURE_NAME = "accuracy.png"
CSV_SUFFIXES = ("", " std", " ci95 seeds low", " ci95 seeds high", " ci95 clips low", " ci95 clips high",
                " delta", " delta low", " delta high", " p bootstrap", " p mcnemar", " paper")


def table_frame(payload: dict, config: Table2Config) -> pd.DataFrame:
    """One record per (classifier, training data) with every column's statistics (see :data:`CSV_SUFFIXES`),
    then, when the config has published numbers, a ``(paper)`` record after each."""
    stats = {(e["classifier"], e["row"], e["task"], e["split"], e["metric"]): e
             for e in payload.get("statistics", {}).get("cells", [])}
    has_paper = any(row.published for row in config.rows)
    records = []
    for classifier in config.classifiers:
        for row in config.rows:
            record: dict[str, Any] = {"classifier": classifier.label, "training data": row.label, "kind": "measured"}
            paper: dict[str, Any] = {"classifier": classifier.label, "training data": f"{row.label} (paper)",
                                     "kind": "paper", "note": ""}
            published = row.published.get(classifier.label, {})
            for task in config.tasks:
                for split in SPLITS:
                    for metric in METRICS:
                        key = column_key(task, split, metric)
                        record.update(_cell(key, stats.get((classifier.label, row.label, task, split, metric))))
                        record[f"{key} paper"] = _paper_value(published.get(key, ILLEGIBLE)) if has_paper else None
                        paper[key] = _paper_value(published.get(key, ILLEGIBLE))
            record["note"] = "; ".join(_notes(payload, classifier.label, row.label))
            records.append(record)
            if has_paper:
                records.append(paper)
    return pd.DataFrame(records)


def _paper_value(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _cell(key: str, entry: dict | None) -> dict[str, Any]:
    entry = entry or {}
    seeds_ci, clips_ci = entry.get("ci95_seeds") or (None, None), entry.get("ci95_clips") or (None, None)
    versus = entry.get("vs_source") or {}
    delta_ci = versus.get("ci95") or (None, None)
    mcnemar = versus.get("mcnemar") or []
    one_seed = entry.get("n") == 1
    return {key: entry.get("mean"), f"{key} std": entry.get("std"),
            f"{key} ci95 seeds low": seeds_ci[0], f"{key} ci95 seeds high": seeds_ci[1],
            f"{key} ci95 clips low": clips_ci[0], f"{key} ci95 clips high": clips_ci[1],
            f"{key} shown low": clips_ci[0] if one_seed else None,
            f"{key} shown high": clips_ci[1] if one_seed else None,
            f"{key} delta": versus.get("delta"), f"{key} delta low": delta_ci[0], f"{key} delta high": delta_ci[1],
            f"{key} p bootstrap": versus.get("p"),
            f"{key} p mcnemar": mcnemar[0]["p"] if len(mcnemar) == 1 else None}


def _notes(payload: dict, classifier: str, row: str) -> list[str]:
    cells = [c for c in payload["cells"] if (c["row"], c["classifier"]) == (row, classifier) and c["status"] != "ok"]
    return list(dict.fromkeys(sorted(c["reason"] for c in cells)))


def table(frame: pd.DataFrame, config: Table2Config, notes: tuple[str, ...] = ()) -> Table:
    """The :class:`~ophora.tables.Table` of a :func:`table_frame`: LaTeX header rows group the columns by task
    and split; missing cells print ``n/a`` (``--`` in LaTeX); paper rows print their text as given."""
    columns = [Column("classifier", "classifier", tex="Classifier", align="l"),
               Column("training data", "training data", tex="Training data", align="l")]
    for task in config.tasks:
        for split in SPLITS:
            for metric, title in METRICS.items():
                key = column_key(task, split, metric)
                columns.append(Column(key, key, tex=title.capitalize(), number=True, md_right=True,
                                      interval=(f"{key} shown low", f"{key} shown high"), spread=f"{key} std",
                                      p_value=f"{key} p bootstrap"))
    records = [r if r["kind"] != "paper" else {k: _paper_text(v) for k, v in r.items()}
               for r in frame.to_dict("records")]
    per_split, per_task = len(METRICS), len(METRICS) * len(SPLITS)
    groups = (((("", 2),) + tuple((task.capitalize(), per_task) for task in config.tasks)),
              (("", 1), ("", 1)) + tuple((split, per_split) for _ in config.tasks for split in SPLITS))
    notes = notes + tuple(f"{r['classifier']}, {r['training data']}: {r['note']}" for r in records if r["note"])
    return Table(tuple(columns), tuple(records),
                 title=f"Table 2 ({config.name}): accuracy (%) of phase and operation recognition", groups=groups,
                 notes=notes, notes_title="Notes:", footer=config.description.strip(), missing="n/a",
                 tex_missing="--")


def _paper_text(value: Any) -> Any:
    """A published value as printed: numbers with two decimals, text (``illegible``) as given."""
    return f"{value:.2f}" if isinstance(value, float) else value


def notes(payload: dict, config: Table2Config) -> tuple[str, ...]:
    """What the cells mean: seeds and intervals, the test behind the p-values, the leakage check, paper rows."""
    seeds = payload.get("seeds") or list(config.seeds)
    stats = payload.get("statistics", {})
    lines = [f"{len(seeds)} seeds ({', '.join(map(str, seeds))}): mean ± std over seeds (95% t-intervals over seeds "
             "in table.csv)" if len(seeds) > 1 else
             f"one seed ({seeds[0]}): value [95% bootstrap interval over the split's clips]"]
    if stats.get("source_row"):
        lines.append(f"p: paired bootstrap over the split's clips against {stats['source_row']!r} "
                     f"({stats.get('bootstrap_resamples')} resamples, two-sided; the same clips for both rows); "
                     "McNemar's exact test per seed, differences and their intervals in table.csv and results.json")
    leaks = payload.get("leakage")
    if leaks:
        what = ("no val or test clip shares a source video or near-duplicate frames with the training clips or the "
                "generators' training data" if not leaks["leaks"] else
                f"{leaks['leaks']} leak(s) ALLOWED by leakage.allow: see results.json")
        lines.append(f"leakage: {what} ({len(leaks['checked'])} pairs of sets checked)")
    lines += window_notes(payload, config)
    if any(row.published for row in config.rows):
        lines.append("(paper) rows: the published Table 2 (poster OCR; REFERENCE.md section 1): certain cells as "
                     "numbers, OCR readings marked (uncertain), the rest illegible")
    return tuple(lines)


def window_notes(payload: dict, config: Table2Config) -> list[str]:
    """One line per classifier: the seconds one sample's window spans (the recipe's frame rate) and covers on
    each data source, from the cells' ``windows`` (:func:`downstream.table2.stages.data_windows`)."""
    lines = []
    for classifier in config.classifiers:
        sources: dict[str, dict] = {}
        for cell in payload.get("cells", []):
            if cell["classifier"] != classifier.label or not cell.get("windows"):
                continue
            for name, report in cell["windows"].items():
                label = f"{cell['row']} synthetic" if name == "train/synthetic" else name.replace("train/", "train ")
                sources.setdefault(label, report)
        if not sources:
            continue
        first = next(iter(sources.values()))
        parts = [f"{label} {_range(r.get('fps'), ' fps')}, covers {_range(r.get('covered_s'), ' s')}"
                 + (f" ({r['shorter_than_window']} of {r['clips']} clips shorter: last frame repeated)"
                    if r.get("shorter_than_window") else "")
                 for label, r in sources.items() if r.get("fps")]
        lines.append(f"window of {classifier.label}: {_range(first.get('window_s'), ' s')} "
                     f"({first.get('sampling', '?')}); " + "; ".join(parts))
    return lines


def _range(values, unit: str) -> str:
    if not values:
        return "?"
    low, high = min(values), max(values)
    return f"{low:g}{unit}" if abs(high - low) < 1e-9 else f"{low:g}-{high:g}{unit}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def figure_bars(frame: pd.DataFrame, config: Table2Config, seeds: int = 1) -> list[dict]:
    """The bars of :func:`figure`: per (metric, task, split, classifier, training data) the value in percent, its
    95% interval (``low``, ``high``: the t-interval over seeds with two or more seeds, else the bootstrap interval
    over the clips; None when absent), the paper's number when published as a number, and ``missing`` for an
    ``n/a`` cell."""
    measured = frame[frame["kind"] == "measured"]
    interval = "seeds" if seeds > 1 else "clips"
    bars = []
    for metric in METRICS:
        for task in config.tasks:
            for split in SPLITS:
                key = column_key(task, split, metric)
                for classifier in config.classifiers:
                    for row in config.rows:
                        record = measured[(measured["classifier"] == classifier.label)
                                          & (measured["training data"] == row.label)]
                        value = record[key].iat[0] if len(record) else None
                        bar = {"metric": metric, "task": task, "split": split, "classifier": classifier.label,
                               "row": row.label, "missing": _missing(value), "value": None, "low": None,
                               "high": None, "paper": None}
                        if not bar["missing"]:
                            low, high = (record[f"{key} ci95 {interval} {end}"].iat[0] for end in ("low", "high"))
                            paper = record[f"{key} paper"].iat[0] if f"{key} paper" in record.columns else None
                            bar.update(value=float(value), low=None if _missing(low) else float(low),
                                       high=None if _missing(high) else float(high),
                                       paper=float(paper) if isinstance(paper, (int, float)) and not _missing(paper)
                                       else None)
                        bars.append(bar)
    return bars


def figure(frame: pd.DataFrame, config: Table2Config, path: Path, seeds: int = 1) -> Path:
    """Table 2 as a figure (:func:`figure_bars`): one panel per (metric, task, split), bars per classifier and
    training data with their 95% interval, the paper's numbers as black diamonds where published, ``n/a`` where
    a cell could not be made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ophora.data.atomic import atomic_path

    panels = [(metric, task, split) for metric in METRICS for task in config.tasks for split in SPLITS]
    columns = len(config.tasks) * len(SPLITS)
    rows = [row.label for row in config.rows]
    classifiers = [c.label for c in config.classifiers]
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / max(len(rows), 1)
    fig, axes = plt.subplots(len(METRICS), columns, figsize=(3.6 * columns, 3.3 * len(METRICS)), squeeze=False)
    axis = {panel: axes.flat[k] for k, panel in enumerate(panels)}
    handles: dict[str, Any] = {}
    for bar in figure_bars(frame, config, seeds):
        ax = axis[(bar["metric"], bar["task"], bar["split"])]
        j = rows.index(bar["row"])
        x = classifiers.index(bar["classifier"]) + (j - (len(rows) - 1) / 2) * width
        if bar["missing"]:
            ax.text(x, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="gray")
            continue
        value, low, high = bar["value"], bar["low"], bar["high"]
        error = None if low is None or high is None else [[value - low], [high - value]]
        handles[bar["row"]] = ax.bar(x, value, width, yerr=error, capsize=2, color=colours[j % len(colours)])
        if bar["paper"] is not None:
            (handles["paper"],) = ax.plot(x, bar["paper"], marker="D", color="black", markersize=4, linestyle="none")
    for (metric, task, split), ax in axis.items():
        ax.set_xticks(range(len(classifiers)), classifiers, fontsize=8)
        ax.set_title(f"{task} {split} {METRICS[metric]}", fontsize=9)
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{METRICS[metric]} accuracy (%)", fontsize=8)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=max(min(len(handles), 5), 1),
               fontsize=8, frameon=False)
    what = "t-intervals over seeds" if seeds > 1 else "bootstrap intervals over the clips"
    fig.suptitle(f"Table 2 ({config.name}): accuracy with 95% {what}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def render(frame: pd.DataFrame, config: Table2Config, out: Path, notes: tuple[str, ...] = (),
           seeds: int | None = None) -> dict[str, Path]:
    """table.md, table.csv (every statistic, one line per measured or paper row), table.tex and the figure
    (:data:`FIGURE_NAME`, :func:`figure`) under ``out`` (numbers in percent, two decimals, four in the CSV).
    ``seeds``: how many seeds the cells have (default: the config's), which picks the figure's intervals."""
    fields = ["classifier", "training data", "kind"]
    fields += [f"{column_key(t, s, m)}{suffix}" for t in config.tasks for s in SPLITS for m in METRICS
               for suffix in CSV_SUFFIXES]
    written = write_tables(table(frame, config, notes), out, fields + ["note"], csv_decimals=4)
    written["png"] = figure(frame, config, Path(out) / FIGURE_NAME, len(config.seeds) if seeds is None else seeds)
    # report.html (benchmarks.report): the table, out's figures, provenance; the payload's file is not written yet
    return {**written, "html": write_report(out, table=table(frame, config, notes), payload={}, config=config)}
