"""The analysis of a rating study (the paper's Fig. 3): what raters gave each set, how sure that is, whether
raters agree, and who failed the attention checks.

Input: the long table of :mod:`benchmarks.rating.export` (one row per rater, video and criterion; the latest
revision). Attention-check repeats are used only for the checks; everything else counts first showings.

- Means with 95% intervals per set and criterion (Fig. 3a), per set, phase and criterion, and per set and phase
  of the per-video mean over criteria (Fig. 3b): a two-way bootstrap that resamples raters and videos (within
  the set), both with replacement, so the interval covers both sources of variation (percentile interval,
  ``n_boot`` resamples).
- Agreement per criterion: Krippendorff's alpha for ordinal data (the ``krippendorff`` package) over every
  video with two or more ratings, and ICC(2,1) and ICC(2,k) (two-way random effects, absolute agreement,
  Shrout & Fleiss 1979) over the videos every rater rated.
- Checks: a repeat whose scores differ from the first showing by more than ``repeat_tolerance`` on average;
  a rater whose mean over the real clips is below ``real_floor``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd

from benchmarks.rating.study import StudyError
from ophora.data.atomic import atomic_path, atomic_write_text
from ophora.results import write_json
from ophora.tables import Column, Table, markdown

__all__ = ["two_way_bootstrap", "icc2", "ordinal_alpha", "summarise", "by_phase", "by_phase_and_criterion",
           "agreement", "checks",
           "analyse_frame", "analyse_folder"]


def two_way_bootstrap(matrix: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``matrix`` (float [raters, videos], NaN where unrated) and its bootstrap interval, resampling
    raters and videos independently with replacement (a resample's mean weights each rated cell by how often its
    rater and its video were drawn)."""
    mask = ~np.isnan(matrix)
    if not mask.any():
        return math.nan, math.nan, math.nan
    values = np.where(mask, matrix, 0.0)
    mean = float(values.sum() / mask.sum())
    raters, videos = matrix.shape
    rng = np.random.default_rng(seed)
    rater_counts = np.stack([np.bincount(rng.integers(0, raters, raters), minlength=raters) for _ in range(n_boot)])
    video_counts = np.stack([np.bincount(rng.integers(0, videos, videos), minlength=videos) for _ in range(n_boot)])
    total = np.einsum("br,rv,bv->b", rater_counts, values, video_counts)
    count = np.einsum("br,rv,bv->b", rater_counts, mask.astype(float), video_counts)
    means = total[count > 0] / count[count > 0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, float(low), float(high)


def icc2(matrix: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) and ICC(2,k) of a complete ``matrix`` [targets, judges] (two-way random effects, absolute
    agreement; Shrout & Fleiss 1979, from the two-way ANOVA mean squares)."""
    x = np.asarray(matrix, float)
    n, k = x.shape
    if n < 2 or k < 2 or np.isnan(x).any():
        return math.nan, math.nan
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    bms, jms, ems = ss_rows / (n - 1), ss_cols / (k - 1), ss_error / ((n - 1) * (k - 1))
    single_den = bms + (k - 1) * ems + k * (jms - ems) / n
    average_den = bms + (jms - ems) / n
    single = (bms - ems) / single_den if single_den else math.nan
    average = (bms - ems) / average_den if average_den else math.nan
    return float(single), float(average)


def ordinal_alpha(matrix: np.ndarray, levels: tuple[int, ...]) -> float:
    """Krippendorff's alpha (ordinal) of ``matrix`` [raters, units], NaN where unrated."""
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    data = matrix[:, pairable]
    if data.shape[1] < 2 or len(np.unique(data[~np.isnan(data)])) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                    value_domain=list(levels)))


def _first_showings(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["check"].fillna("") != "repeat"]


def _matrix(frame: pd.DataFrame, raters: list[str], value: str = "score") -> tuple[np.ndarray, list[str]]:
    table = frame.pivot_table(index="rater", columns="video", values=value, aggfunc="mean")
    table = table.reindex(index=raters)
    return table.to_numpy(float), list(table.columns)


def summarise(frame: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per set and criterion: mean, 95% interval, raters, videos, ratings (Fig. 3a)."""
    frame = _first_showings(frame)
    raters = sorted(frame["rater"].unique())
    rows = []
    for (set_name, criterion), group in frame.groupby(["set", "criterion"], sort=False):
        matrix, videos = _matrix(group, raters)
        mean, low, high = two_way_bootstrap(matrix, n_boot, seed)
        rows.append({"set": set_name, "criterion": criterion, "mean": mean, "low": low, "high": high,
                     "raters": int(group["rater"].nunique()), "videos": len(videos), "ratings": len(group)})
    return pd.DataFrame(rows)


def by_phase_and_criterion(frame: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per set, phase and criterion: mean, 95% interval, raters, videos, ratings."""
    frame = _first_showings(frame)
    raters = sorted(frame["rater"].unique())
    rows = []
    for (set_name, phase, criterion), group in frame.groupby(["set", "phase", "criterion"], sort=False):
        matrix, videos = _matrix(group, raters)
        mean, low, high = two_way_bootstrap(matrix, n_boot, seed)
        rows.append({"set": set_name, "phase": phase, "criterion": criterion, "mean": mean, "low": low,
                     "high": high, "raters": int(group["rater"].nunique()), "videos": len(videos),
                     "ratings": len(group)})
    return pd.DataFrame(rows)


def by_phase(frame: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per set and phase: the mean over criteria of each rating, its mean and 95% interval (Fig. 3b)."""
    frame = _first_showings(frame)
    raters = sorted(frame["rater"].unique())
    per_video = frame.groupby(["rater", "set", "phase", "video"], as_index=False)["score"].mean()
    rows = []
    for (set_name, phase), group in per_video.groupby(["set", "phase"], sort=False):
        matrix, videos = _matrix(group, raters)
        mean, low, high = two_way_bootstrap(matrix, n_boot, seed)
        rows.append({"set": set_name, "phase": phase, "mean": mean, "low": low, "high": high,
                     "raters": int(group["rater"].nunique()), "videos": len(videos), "ratings": len(group)})
    return pd.DataFrame(rows)


def agreement(frame: pd.DataFrame, levels: tuple[int, ...]) -> pd.DataFrame:
    """Per criterion: Krippendorff's ordinal alpha (videos with 2+ raters) and ICC(2,1)/ICC(2,k) (videos
    every rater rated), with the numbers of videos each used."""
    frame = _first_showings(frame)
    raters = sorted(frame["rater"].unique())
    rows = []
    for criterion, group in frame.groupby("criterion", sort=False):
        matrix, _ = _matrix(group, raters)
        complete = matrix[:, ~np.isnan(matrix).any(axis=0)]
        single, average = icc2(complete.T)
        rows.append({"criterion": criterion, "alpha_ordinal": ordinal_alpha(matrix, levels),
                     "alpha_videos": int(((~np.isnan(matrix)).sum(axis=0) >= 2).sum()),
                     "icc2_1": single, "icc2_k": average, "icc_videos": int(complete.shape[1]),
                     "raters": len(raters)})
    return pd.DataFrame(rows)


def checks(frame: pd.DataFrame, repeat_tolerance: float, real_floor: float) -> pd.DataFrame:
    """One row per check: repeats (mean |difference| to the first showing) and real-clip calibration."""
    rows = []
    for (rater, position), repeat in frame[frame["check"] == "repeat"].groupby(["rater", "position"]):
        first = frame[(frame["rater"] == rater) & (frame["position"] == int(repeat["repeat_of"].iloc[0]))]
        merged = repeat.merge(first, on="criterion", suffixes=("", "_first"))
        if merged.empty:
            continue
        difference = float((merged["score"] - merged["score_first"]).abs().mean())
        rows.append({"rater": rater, "check": "repeat", "detail": f"position {position + 1} repeats "
                     f"{int(repeat['repeat_of'].iloc[0]) + 1}", "value": difference,
                     "passed": difference <= repeat_tolerance})
    real = _first_showings(frame)
    real = real[real["role"] == "real"]
    for rater, group in real.groupby("rater"):
        mean = float(group["score"].mean())
        rows.append({"rater": rater, "check": "real clips", "detail": f"mean over {group['video'].nunique()} "
                     "real clips, all criteria", "value": mean, "passed": mean >= real_floor})
    return pd.DataFrame(rows, columns=["rater", "check", "detail", "value", "passed"])


def _figure_3a(summary: pd.DataFrame, labels: dict[str, str], path: Path) -> None:
    from matplotlib.figure import Figure

    sets = list(dict.fromkeys(summary["set"]))
    criteria = list(dict.fromkeys(summary["criterion"]))
    criteria = [c for c in labels if c in criteria] + [c for c in criteria if c not in labels]
    width = 0.8 / max(1, len(sets))
    fig = Figure(figsize=(max(7, 1.4 * len(criteria)), 4.2))
    ax = fig.subplots()
    for i, set_name in enumerate(sets):
        part = summary[summary["set"] == set_name].set_index("criterion").reindex(criteria)
        x = np.arange(len(criteria)) + (i - (len(sets) - 1) / 2) * width
        ax.bar(x, part["mean"], width, label=set_name,
               yerr=[part["mean"] - part["low"], part["high"] - part["mean"]], capsize=2)
    ax.set_xticks(np.arange(len(criteria)), [labels.get(c, c) for c in criteria], rotation=20, ha="right")
    ax.set_ylabel("mean score (95% CI, raters x videos)")
    ax.set_title("Fig. 3a: ratings per criterion")
    ax.set_ylim(0, float(summary["high"].max()) + 1.0)
    ax.legend(fontsize=8, ncol=len(sets), loc="upper center")
    fig.tight_layout()
    _save_figure(fig, path)


def _figure_3b(phases: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    sets = list(dict.fromkeys(phases["set"]))
    names = list(dict.fromkeys(phases["phase"]))
    fig = Figure(figsize=(max(7, 0.9 * len(names) + 3), 4.2))
    ax = fig.subplots()
    for i, set_name in enumerate(sets):
        part = phases[phases["set"] == set_name].set_index("phase").reindex(names)
        x = np.arange(len(names)) + (i - (len(sets) - 1) / 2) * 0.08
        ax.errorbar(x, part["mean"], yerr=[part["mean"] - part["low"], part["high"] - part["mean"]], marker="o",
                    capsize=2, label=set_name)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("mean score over criteria (95% CI)")
    ax.set_title("Fig. 3b: ratings per surgical phase")
    ax.set_ylim(max(0.0, float(phases["low"].min()) - 0.5), float(phases["high"].max()) + 1.0)
    ax.legend(fontsize=8, ncol=len(sets), loc="upper center")
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130)


def _table(summary: pd.DataFrame, labels: dict[str, str], agreement_rows: pd.DataFrame,
           check_rows: pd.DataFrame) -> str:
    criteria = list(dict.fromkeys(summary["criterion"]))
    records = []
    for set_name, part in summary.groupby("set", sort=False):
        record = {"set": set_name}
        for row in part.itertuples():
            record.update({row.criterion: row.mean, f"{row.criterion}_low": row.low,
                           f"{row.criterion}_high": row.high})
        records.append(record)
    columns = (Column("set", "set"),) + tuple(
        Column(c, labels.get(c, c), number=True, interval=(f"{c}_low", f"{c}_high"), better="higher")
        for c in criteria)
    notes = [f"{r.criterion}: Krippendorff's alpha (ordinal) {_num(r.alpha_ordinal)} over {r.alpha_videos} "
             f"videos, ICC(2,1) {_num(r.icc2_1)}, ICC(2,k) {_num(r.icc2_k)} over {r.icc_videos} videos, "
             f"{r.raters} raters" for r in agreement_rows.itertuples()]
    failed = check_rows[~check_rows["passed"].astype(bool)] if len(check_rows) else check_rows
    notes.append(f"attention checks: {len(check_rows) - len(failed)} of {len(check_rows)} passed" +
                 ("".join(f"; failed: {r.rater} ({r.check}, {r.detail}, {r.value:.2f})"
                          for r in failed.itertuples())))
    notes.append("means over raters and videos (first showings); 95% intervals: two-way bootstrap over raters "
                 "and videos")
    return markdown(Table(columns, tuple(records), title="Rating study (Fig. 3a)", notes=tuple(notes)))


def _num(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _ordered(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Rows in the study's order: sets as listed, phases as listed in ``phases`` (else by name), criteria as
    listed (else as found)."""
    def rank(names: list[str], column: str) -> dict[str, int]:
        found = list(dict.fromkeys(table[column])) if column in table else []
        listed = [n for n in names if n in found]
        return {name: i for i, name in enumerate(listed + [n for n in sorted(found) if n not in listed])}

    keys = {"set": rank([s["name"] for s in config.get("sets", [])], "set"),
            "phase": rank(list(config.get("phases", [])), "phase"),
            "criterion": rank([c["key"] for c in config.get("criteria", [])], "criterion")}
    columns = [c for c in ("set", "phase", "criterion") if c in table]
    if table.empty or not columns:
        return table
    order = table[columns].apply(lambda row: tuple(keys[c].get(row[c], 0) for c in columns), axis=1)
    return table.loc[order.sort_values(kind="stable").index].reset_index(drop=True)


def analyse_frame(frame: pd.DataFrame, out: str | Path, config: dict, n_boot: int = 2000, seed: int = 0) -> Path:
    """Write summary.csv, phases.csv, phase_criteria.csv, agreement.csv, checks.csv, table.md, fig3a.png,
    fig3b.png and analysis.json under ``out``; return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if frame.empty:
        raise StudyError("no ratings to analyse yet: raters have not saved any (or the ratings.csv is empty)")
    low, high = config.get("scale", (1, 5))
    labels = {c["key"]: c["label"] for c in config.get("criteria", [])}
    check_cfg = config.get("checks", {})
    summary = _ordered(summarise(frame, n_boot, seed), config)
    phases = _ordered(by_phase(frame, n_boot, seed), config)
    phase_criteria = _ordered(by_phase_and_criterion(frame, n_boot, seed), config)
    agree = agreement(frame, tuple(range(int(low), int(high) + 1)))
    check_rows = checks(frame, float(check_cfg.get("repeat_tolerance", 1.0)), float(check_cfg.get("real_floor", 2.5)))
    for name, table in (("summary", summary), ("phases", phases), ("phase_criteria", phase_criteria),
                        ("agreement", agree), ("checks", check_rows)):
        atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
    atomic_write_text(out / "table.md", _table(summary, labels, agree, check_rows))
    _figure_3a(summary, labels, out / "fig3a.png")
    _figure_3b(phases, out / "fig3b.png")
    payload = {"format": "ophora-rating-analysis/1", "n_boot": n_boot, "raters": int(frame["rater"].nunique()),
               "ratings": int(len(frame) // max(1, frame["criterion"].nunique())),
               "summary": json.loads(summary.to_json(orient="records")),
               "phases": json.loads(phases.to_json(orient="records")),
               "phase_criteria": json.loads(phase_criteria.to_json(orient="records")),
               "agreement": json.loads(agree.to_json(orient="records")),
               "checks": json.loads(check_rows.to_json(orient="records"))}
    write_json(out / "analysis.json", payload, config=config, seed=seed)
    return out


def analyse_folder(folder: str | Path, out: str | Path | None = None, database: str | None = None,
                   n_boot: int = 2000, seed: int = 0) -> Path:
    """Analyse a study folder (reads its database) or a ``ratings.csv`` written by export (its study.json is
    looked for two folders up, for the criteria's labels and the checks' thresholds)."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".csv":
        frame = pd.read_csv(folder, keep_default_na=False, na_values={"repeat_of": [""], "score": [""]})
        study_file = folder.resolve().parent.parent / "study.json"
        config = json.loads(study_file.read_text())["config"] if study_file.is_file() else {}
        return analyse_frame(frame, out or folder.parent / "analysis", config, n_boot, seed)
    from benchmarks.rating.export import ratings_frame
    from benchmarks.rating.study import open_study

    study = open_study(folder, database)
    return analyse_frame(ratings_frame(study), out or folder / "analysis", study.config, n_boot, seed)
