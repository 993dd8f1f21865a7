"""Table 1's files: ``table.md``, ``table.csv``, ``table.tex`` (booktabs), a frame grid and a metrics chart.

Cells are ``value [low, high]`` with the 95% bootstrap interval of :mod:`benchmarks.evaluate`; the best value
per column is bold; '-' marks a metric a row does not have (CLIPScore of an unconditional model). Where the
config carries the paper's numbers they are printed beside the measured ones.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ophora.data.atomic import atomic_path, atomic_write_text

__all__ = ["METRICS", "table_rows", "write_markdown", "write_csv", "write_latex", "frame_grid", "metric_chart"]

# metric -> (column title, lower is better)
METRICS = {"fid": ("FID", True), "fvd": ("FVD", True), "clipscore": ("CLIPScore", False)}


def table_rows(results: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One plain record per row: name, and per metric value/low/high/n/published (None where absent)."""
    rows = []
    for result in results:
        row = {"model": result["name"]}
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


def _best(rows: list[dict[str, Any]], metric: str) -> float | None:
    values = [r[metric] for r in rows if r[metric] is not None and math.isfinite(r[metric])]
    if not values:
        return None
    return min(values) if METRICS[metric][1] else max(values)


def _cell(row: dict[str, Any], metric: str) -> str:
    value = row[metric]
    if value is None:
        return "-"
    text = f"{value:.2f}"
    if row[f"{metric}_low"] is not None:
        text += f" [{row[f'{metric}_low']:.2f}, {row[f'{metric}_high']:.2f}]"
    return text


def _header(metric: str) -> str:
    title, lower = METRICS[metric]
    return f"{title} {'↓' if lower else '↑'}"


def _has_published(rows: list[dict[str, Any]], metrics: Sequence[str]) -> bool:
    return any(r[f"{m}_published"] is not None for r in rows for m in metrics)


def write_markdown(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str], notes: Sequence[str]) -> Path:
    published = _has_published(rows, metrics)
    head = ["model"] + [_header(m) for m in metrics]
    if published:
        head += [f"{METRICS[m][0]} (paper)" for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"]]
        for metric in metrics:
            text = _cell(row, metric)
            if row[metric] is not None and row[metric] == _best(rows, metric):
                value, _, rest = text.partition(" ")
                text = f"**{value}** {rest}".strip()
            cells.append(text)
        if published:
            cells += ["-" if row[f"{m}_published"] is None else f"{row[f'{m}_published']}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return atomic_write_text(path, text)


def write_csv(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str]) -> Path:
    fields = ["model"] + [f"{m}{suffix}" for m in metrics for suffix in ("", "_low", "_high", "_n", "_published")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    return atomic_write_text(path, buffer.getvalue())


def _tex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def write_latex(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str], caption: str) -> Path:
    published = _has_published(rows, metrics)
    arrows = {True: r"$\downarrow$", False: r"$\uparrow$"}
    head = ["Model"] + [f"{METRICS[m][0]} {arrows[METRICS[m][1]]}" for m in metrics]
    if published:
        head += [f"{METRICS[m][0]} (paper)" for m in metrics]
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}",
             r"\begin{tabular}{l" + "c" * (len(head) - 1) + "}", r"\toprule", " & ".join(head) + r" \\",
             r"\midrule"]
    for row in rows:
        cells = [_tex_escape(row["model"])]
        for metric in metrics:
            value = row[metric]
            if value is None:
                cells.append("-")
                continue
            text = f"{value:.2f}"
            if value == _best(rows, metric):
                text = rf"\textbf{{{text}}}"
            if row[f"{metric}_low"] is not None:
                text += rf"\,{{\scriptsize[{row[f'{metric}_low']:.2f}, {row[f'{metric}_high']:.2f}]}}"
            cells.append(text)
        if published:
            cells += ["-" if row[f"{m}_published"] is None else _tex_escape(str(row[f"{m}_published"]))
                      for m in metrics]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _frames(path: Path, count: int, size: int) -> np.ndarray:
    """``count`` uniformly spaced frames of a video, each resized to ``size`` x ``size``: uint8 [count, s, s, 3]."""
    from PIL import Image

    from ophora.data.video import Uniform, read_video

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


def metric_chart(path: Path, rows: list[dict[str, Any]], metrics: Sequence[str], title: str) -> Path:
    """One bar panel per metric, a bar per row with its 95% interval; rows without the metric are left out."""
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
        ax.set_title(_header(metric))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
