"""The HTML of a report: one self-contained file (inline CSS, no script, no external request).

:func:`table_html` renders an :class:`ophora.tables.Table` with the cell rules of Markdown and LaTeX (values,
intervals or ``± spread``, p-values, the best value per column in bold, arrows, header groups, notes);
:func:`page` wraps titled sections; the other helpers render key/value lists, video rows and figures.
"""
from __future__ import annotations

import html
import json
from typing import Any, Iterable, Mapping, Sequence

from ophora.tables import Table, _parts, _title

__all__ = ["page", "section", "table_html", "fields_html", "figure_html", "video_cell", "details_json", "esc"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;color:#1b1b1b;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#555;margin:0 0 12px}.banner{background:#fff4d6;border:1px solid #e6c45c;padding:8px 12px;margin:12px 0}
table{border-collapse:collapse;margin:8px 0}.scroll{overflow-x:auto}
th,td{border:1px solid #d6d6d6;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;white-space:nowrap}.ci{color:#666;font-size:12px}
.p{color:#666;font-size:12px}td.miss{color:#999;text-align:center}
.videos{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0 18px}figure{margin:0}
figcaption{font-size:12px;color:#333;width:192px}video{display:block;background:#000;width:192px;height:auto;
image-rendering:pixelated}
.prompt{font-style:italic;margin:10px 0 2px}img.fig{max-width:100%;border:1px solid #eee}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}dl.kv dt{color:#555}
dl.kv dd{margin:0;word-break:break-all}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
.missing-video{width:192px;height:108px;display:flex;align-items:center;justify-content:center;background:#eee;
color:#777;font-size:12px;text-align:center}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, subtitle: str, sections: Iterable[str], banner: str = "") -> str:
    """A whole document: title, subtitle, an optional warning banner, then the sections in order."""
    body = [f"<h1>{esc(title)}</h1>"] + ([f'<p class="sub">{esc(subtitle)}</p>'] if subtitle else [])
    body += [f'<div class="banner">{esc(banner)}</div>'] if banner else []
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body + list(sections)) + "\n</body></html>\n")


def section(title: str, content: str, anchor: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{content}\n</section>'


def _cell(table: Table, column: Any, record: Mapping[str, Any]) -> str:
    parts = _parts(table, column, record)
    if parts is None:
        return f'<td class="miss">{esc(table.missing)}</td>'
    text, spread, p, bold = parts
    value = f"<b>{esc(text)}</b>" if bold else esc(text)
    extra = (f' <span class="ci">{esc(spread)}</span>' if spread else "") + (f' <span class="p">{esc(p)}</span>'
                                                                            if p else "")
    return f'<td class="{"num" if column.number else "txt"}">{value}{extra}</td>'


def table_html(table: Table) -> str:
    """The table (header groups, column titles with arrows, cells as in Markdown) and its notes and footer."""
    rows = ["<tr>" + "".join(f'<th colspan="{span}">{esc(label)}</th>' for label, span in group) + "</tr>"
            for group in table.groups]
    rows.append("<tr>" + "".join(f"<th>{esc(_title(c, False))}</th>" for c in table.columns) + "</tr>")
    body = ["<tr>" + "".join(_cell(table, c, r) for c in table.columns) + "</tr>" for r in table.records]
    out = [f'<div class="scroll"><table class="results"><thead>{"".join(rows)}</thead><tbody>{"".join(body)}</tbody>'
           "</table></div>"]
    if table.notes:
        out.append((f"<p>{esc(table.notes_title)}</p>" if table.notes_title else "")
                   + "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in table.notes) + "</ul>")
    if table.footer:
        out.append(f"<p>{esc(table.footer)}</p>")
    return "\n".join(out)


def fields_html(fields: Mapping[str, Any]) -> str:
    """A definition list of ``fields`` (values printed as text; None left out)."""
    items = [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in fields.items() if v is not None]
    return f'<dl class="kv">{"".join(items)}</dl>'


def figure_html(uri: str, caption: str) -> str:
    return f'<figure><img class="fig" src="{uri}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def video_cell(label: str, uri: str | None, size: tuple[int, int] | None, caption: str) -> str:
    """One video of a row (looping, muted, with controls) and its caption; a grey box where there is none."""
    if uri is None or size is None:
        return (f'<figure><div class="missing-video">{esc(caption)}</div><figcaption><b>{esc(label)}</b>'
                f"</figcaption></figure>")
    height, width = size  # shown 192 px wide whatever the clip's size (CSS), so rows line up
    return (f'<figure><video width="{width}" height="{height}" src="{uri}" autoplay loop muted playsinline '
            f'controls preload="auto"></video><figcaption><b>{esc(label)}</b><br>{esc(caption)}</figcaption>'
            "</figure>")


def details_json(summary: str, value: Any) -> str:
    """A collapsed block holding ``value`` as indented JSON."""
    text = json.dumps(value, indent=2, default=str, allow_nan=True)
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def key_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain table of text cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
