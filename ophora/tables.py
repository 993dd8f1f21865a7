"""The one table renderer: a :class:`Table` (columns and records) written as Markdown, CSV and booktabs LaTeX.

Number columns print ``decimals`` digits, with the interval ``[low, high]`` when the column names the records'
keys of its ends, or ``± spread`` when it names the key of a spread (a standard deviation), and ``(p=...)`` when
it names the key of a p-value (:func:`p_text`); a column with a direction (``better="lower"`` or ``"higher"``)
carries an arrow in its title and its best value in bold. A missing value (None or NaN) prints as the table's
``missing`` text. Notes go under the Markdown table; LaTeX gets a ``table`` float when the table has a caption,
else a bare ``tabular``, with optional spanning header rows (``groups``) above the column titles.
:func:`tex_escape` is the one LaTeX escaper.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ophora.data.atomic import atomic_write_text

__all__ = ["ARROWS", "Column", "Table", "tex_escape", "markdown", "latex", "csv_text", "best", "write_tables",
           "p_text"]

ARROWS = {"lower": ("↓", r"$\downarrow$"), "higher": ("↑", r"$\uparrow$")}  # (Markdown, LaTeX)
_TEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "_": r"\_",
        "#": r"\#", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """``text`` as literal LaTeX: each of ``\\ { } $ & % _ # ~ ^`` replaced in one pass (so the braces of
    ``\\textbackslash{}`` are never escaped again)."""
    return "".join(_TEX.get(char, char) for char in text)


@dataclass(frozen=True)
class Column:
    """One column. ``key``: the records' key of its values; ``title``: its Markdown (and CSV) title; ``tex``: its
    LaTeX title (default ``title``). ``number``: values print with ``decimals`` digits (else as ``str``);
    ``interval``: the records' keys of the interval's low and high ends; ``spread``: the records' key of a ``±``
    value (used when the interval is absent); ``p_value``: the records' key of a p-value printed after the value;
    ``better``: the direction that adds an arrow and bolds the best value. ``align``: the LaTeX column letter;
    ``md_right``: right-aligned in Markdown."""

    key: str
    title: str
    tex: str | None = None
    number: bool = False
    decimals: int = 2
    interval: tuple[str, str] | None = None
    spread: str | None = None
    p_value: str | None = None
    better: Literal["lower", "higher"] | None = None
    align: str = "c"
    md_right: bool = False


@dataclass(frozen=True)
class Table:
    """Columns, one record (a mapping of raw values) per row, and what goes around them: a Markdown ``title``
    (a ``#`` heading), a LaTeX ``caption``, LaTeX header ``groups`` (rows of (label, span) above the titles),
    ``notes`` (Markdown bullets under the table, after ``notes_title`` when given), a Markdown ``footer``
    paragraph, and the ``missing`` text (``tex_missing`` in LaTeX, default the same)."""

    columns: tuple[Column, ...]
    records: tuple[Mapping[str, Any], ...]
    title: str = ""
    caption: str = ""
    groups: tuple[tuple[tuple[str, int], ...], ...] = ()
    notes: tuple[str, ...] = ()
    notes_title: str = ""
    footer: str = ""
    missing: str = "-"
    tex_missing: str | None = None


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def best(table: Table, column: Column) -> float | None:
    """The best finite value of a column with a direction (None without a direction or a finite value)."""
    if column.better is None:
        return None
    values = [v for v in (r[column.key] for r in table.records)
              if isinstance(v, (int, float)) and not _absent(v) and math.isfinite(v)]
    if not values:
        return None
    return min(values) if column.better == "lower" else max(values)


def p_text(p: float) -> str:
    """A p-value as printed: ``p=0.031``, ``p=0.50``, ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.1 else f"p={p:.2f}"


def _parts(table: Table, column: Column, record: Mapping[str, Any]) -> tuple[str, str, str, bool] | None:
    """(value text, interval or ``± spread`` text or "", p-value text or "", bold) of a cell; None when the value
    is missing."""
    value = record[column.key]
    if _absent(value):
        return None
    if not column.number or isinstance(value, str):  # text in a number column (e.g. "illegible") prints as given
        return str(value), "", "", False
    text, spread, p = f"{value:.{column.decimals}f}", "", ""
    if column.interval and not any(_absent(record.get(k)) for k in column.interval):
        low, high = (record[k] for k in column.interval)
        spread = f"[{low:.{column.decimals}f}, {high:.{column.decimals}f}]"
    elif column.spread and not _absent(record.get(column.spread)):
        spread = f"± {record[column.spread]:.{column.decimals}f}"
    if column.p_value and not _absent(record.get(column.p_value)):
        p = f"({p_text(record[column.p_value])})"
    return text, spread, p, value == best(table, column)


def _md_cell(table: Table, column: Column, record: Mapping[str, Any]) -> str:
    parts = _parts(table, column, record)
    if parts is None:
        return table.missing
    text, spread, p, bold = parts
    text = f"**{text}**" if bold else text
    return " ".join(part for part in (text, spread, p) if part)


def _tex_cell(table: Table, column: Column, record: Mapping[str, Any]) -> str:
    parts = _parts(table, column, record)
    if parts is None:
        return table.missing if table.tex_missing is None else table.tex_missing
    text, spread, p, bold = parts
    text = rf"\textbf{{{tex_escape(text)}}}" if bold else tex_escape(text)
    if spread.startswith("±"):
        spread = r"$\pm$" + spread[1:].strip()
    elif spread:
        spread = tex_escape(spread)
    p = tex_escape(p).replace("<", "$<$")
    return text + "".join(rf"\,{{\scriptsize{part}}}" for part in (spread, p) if part)


def _title(column: Column, tex: bool) -> str:
    arrow = ARROWS[column.better][tex] if column.better else ""
    title = tex_escape(column.tex if column.tex is not None else column.title) if tex else column.title
    return f"{title} {arrow}" if arrow else title


def markdown(table: Table) -> str:
    """The table as Markdown: optional ``# title``, the table, notes, footer."""
    lines = [f"# {table.title}", ""] if table.title else []
    lines += ["| " + " | ".join(_title(c, False) for c in table.columns) + " |",
              "|" + "".join("---:|" if c.md_right else "---|" for c in table.columns)]
    lines += ["| " + " | ".join(_md_cell(table, c, r) for c in table.columns) + " |" for r in table.records]
    if table.notes:
        lines += [""] + ([table.notes_title] if table.notes_title else []) + [f"- {n}" for n in table.notes]
    if table.footer:
        lines += ["", table.footer]
    return "\n".join(lines) + "\n"


def latex(table: Table) -> str:
    """The table as booktabs LaTeX: a ``table`` float with the caption, or a bare ``tabular`` without one."""
    head = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(table.caption)}}}"] if table.caption else []
    lines = head + [r"\begin{tabular}{" + "".join(c.align for c in table.columns) + "}", r"\toprule"]
    for row in table.groups:
        lines.append(" & ".join(rf"\multicolumn{{{span}}}{{c}}{{{tex_escape(label)}}}" if span > 1
                                else tex_escape(label) for label, span in row) + r" \\")
    lines += [" & ".join(_title(c, True) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex_cell(table, c, r) for c in table.columns) + r" \\" for r in table.records]
    lines += [r"\bottomrule", r"\end{tabular}"] + ([r"\end{table}"] if table.caption else [])
    return "\n".join(lines) + "\n"


def csv_text(records: Sequence[Mapping[str, Any]], fields: Sequence[str], decimals: int | None = None) -> str:
    """CSV of ``fields`` of each record: missing values empty, floats with ``decimals`` digits (None: every
    digit Python prints)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for record in records:
        writer.writerow([_csv_value(record.get(k), decimals) for k in fields])
    return buffer.getvalue()


def _csv_value(value: Any, decimals: int | None) -> Any:
    if _absent(value):
        return ""
    if isinstance(value, float) and decimals is not None:
        return f"{value:.{decimals}f}"
    return value


def write_tables(table: Table, folder: Path, csv_fields: Sequence[str], csv_decimals: int | None = None,
                 stem: str = "table") -> dict[str, Path]:
    """``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex`` under ``folder``, each written atomically."""
    folder = Path(folder)
    return {"md": atomic_write_text(folder / f"{stem}.md", markdown(table)),
            "csv": atomic_write_text(folder / f"{stem}.csv", csv_text(table.records, csv_fields, csv_decimals)),
            "tex": atomic_write_text(folder / f"{stem}.tex", latex(table))}
