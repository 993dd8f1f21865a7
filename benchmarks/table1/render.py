"""Table 1's files: ``table.md``, ``table.csv``, ``table.tex`` (booktabs), a frame grid, a metrics chart and
``report.html`` (:mod:`benchmarks.report`: the table, the figures and each row's videos side by side for the same
prompt, protocols, N and provenance, in one self-contained page).

Cells are ``value [low, high]`` with the 95% bootstrap interval of :mod:`benchmarks.evaluate`; the best value
per column is bold; '-' marks a metric a row does not have (CLIPScore of an unconditional model). Where the
config carries the paper's numbers they are printed beside the measured ones. The three table files are
rendered by :mod:`ophora.tables`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks import metrics as registry
from benchmarks import report
from benchmarks.table1.config import SURGICAL_PREFIX
from ophora.data.atomic import atomic_path, atomic_write_text
from ophora.data.video import Uniform, read_video
from ophora.tables import ARROWS, Column, Table, csv_text, latex, markdown

__all__ = ["table_rows", "table", "write_markdown", "write_csv", "write_latex", "frame_grid", "metric_chart",
           "write_report"]


def table_rows(results: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One plain record per row: name, and per metric value/low/high/n/published (None where absent)."""
    rows = []
    for result in results:
        row = {"model": result["name"], "origin": result.get("origin")}
        for metric in metrics:
            m = result["metrics"].get(metric)
            interval = (m or {}).get("ci") or {}
            row[metric] = None if m is None else m["value"]
            row[f"{metric}_low"] = interval.get("low")
            row[f"{metric}_high"] = interval.get("high")
            row[f"{metric}_n"] = None if m is None else m.get("n_fake", m.get("n"))
            row[f"{metric}_published"] = result.get("published", {}).get(metric)
        rows.append(row)
    return rows


def _metric(column: str):
    """The metric class of a column: ``fid`` or ``surgical_fid`` (the same metric under the surgical protocol)."""
    return registry.get(column.removeprefix(SURGICAL_PREFIX))


def _title(column: str) -> str:
    """``FID``, or ``FID (surgical)`` for a surgical column."""
    name = _metric(column).display_name
    return f"{name} (surgical)" if column.startswith(SURGICAL_PREFIX) else name


def _direction(metric: str) -> str:
    return "higher" if _metric(metric).higher_is_better else "lower"


def _header(metric: str) -> str:
    return f"{_title(metric)} {ARROWS[_direction(metric)][0]}"


def table(rows: list[dict[str, Any]], metrics: Sequence[str], notes: Sequence[str] = (), caption: str = "") -> Table:
    """The table of :func:`table_rows` records: model, one column per metric (value, interval, best in bold),
    and the paper's numbers per metric when any row has them."""
    columns = [Column("model", "model", tex="Model", align="l")]
    columns += [Column(m, _title(m), number=True, interval=(f"{m}_low", f"{m}_high"),
                       better=_direction(m)) for m in metrics]
    published = [m for m in metrics if any(r[f"{m}_published"] is not None for r in rows)]
    columns += [Column(f"{m}_published", f"{_title(m)} (paper)") for m in published]
    if any(r.get("origin") for r in rows):
        columns.append(Column("origin", "videos from", tex="Videos from", align="l"))
    return Table(tuple(columns), tuple(rows), caption=caption, notes=tuple(notes))


def write_markdown(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str], notes: Sequence[str]) -> Path:
    return atomic_write_text(path, markdown(table(rows, metrics, notes)))


def write_csv(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str]) -> Path:
    suffixes = ("", "_low", "_high", "_n", "_published")
    fields = ["model", "origin"] + [f"{m}{suffix}" for m in metrics for suffix in suffixes]
    return atomic_write_text(path, csv_text(rows, fields))


def write_latex(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str], caption: str) -> Path:
    return atomic_write_text(path, latex(table(rows, metrics, caption=caption)))


def write_table_files(output: Path, stem: str, shown: Table, fields: Sequence[str], tex: Table) -> None:
    """``stem.md`` (``shown`` with its notes), ``stem.csv`` (``fields`` of its records) and ``stem.tex`` (``tex``)."""
    atomic_write_text(output / f"{stem}.md", markdown(shown))
    atomic_write_text(output / f"{stem}.csv", csv_text(list(shown.records), list(fields)))
    atomic_write_text(output / f"{stem}.tex", latex(tex))


def write_report(output: Path, rows: list[dict[str, Any]], metrics: Sequence[str], notes: Sequence[str],
                 video_sets: Sequence[tuple[str, Path | str]], title: str,
                 extra: Sequence[tuple[str, str, Table]] = ()) -> Path:
    """``output/report.html`` from ``output/results.json`` (written first), the table of ``rows`` and the
    PNG figures of ``output``; ``video_sets``: (row name, videos) with the real set first; ``extra``: further
    (title, anchor, table) sections after the table (the "Beyond the paper" table)."""
    return report.write_report(output, table=table(rows, metrics, notes), video_sets=video_sets, title=title,
                               tables=extra)


def _frames(path: Path, count: int, size: int) -> np.ndarray:
    """``count`` uniformly spaced frames of a video, each resized to ``size`` x ``size``: uint8 [count, s, s, 3]."""
    from PIL import Image


    frames = read_video(path, Uniform(count))
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.NEAREST)) for f in frames])


def frame_grid(path: Path, rows: Sequence[tuple[str, Path | None]], prompt: str, count: int = 6,
               size: int = 96) -> Path:
    """A Fig.-2-style grid: one row of ``count`` frames per model (label on the left), the prompt on top."""
    from PIL import Image, ImageDraw

    label_w, pad, top = 190, 4, 34
    width = label_w + count * (size + pad) + pad
    height = top + len(rows) * (size + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), _wrap(f"prompt: {prompt}", 150), fill="black")
    for i, (name, video) in enumerate(rows):
        y = top + i * (size + pad)
        draw.text((pad, y + size // 2 - 6), _wrap(name, 28), fill="black")
        if video is None:
            draw.text((label_w, y + size // 2 - 6), "(no video)", fill="gray")
            continue
        for j, frame in enumerate(_frames(video, count, size)):
            canvas.paste(Image.fromarray(frame), (label_w + pad + j * (size + pad), y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:2])


def metric_chart(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str], title: str,
                 headers: dict[str, str] | None = None) -> Path:
    """One bar panel per metric, a bar per row with its 95% interval; rows without the metric are left out;
    ``headers``: panel titles by column (default: the registry's name and direction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        shown = [r for r in rows if r[metric] is not None]
        values = [r[metric] for r in shown]
        low = [r[metric] - r[f"{metric}_low"] if r[f"{metric}_low"] is not None else 0 for r in shown]
        high = [r[f"{metric}_high"] - r[metric] if r[f"{metric}_high"] is not None else 0 for r in shown]
        ax.bar(range(len(shown)), values, yerr=[low, high], capsize=3, color="#4C72B0")
        ax.set_xticks(range(len(shown)), [r["model"] for r in shown], rotation=40, ha="right", fontsize=8)
        ax.set_title((headers or {}).get(metric) or _header(metric))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
