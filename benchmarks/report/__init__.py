"""``report.html`` beside a table or an evaluation: one self-contained page a person opens in a browser.

The page holds the table with its intervals, every figure of the results folder (the metrics chart, the frame
grid, ...), the videos of each row side by side for the same prompt (small VP9 clips, :mod:`.media`), the
protocols and detectors, the geometry and N, and the provenance (commit, date, packages, config). Everything is
inline (CSS, PNG and WebM as ``data:`` URIs), so the file can be mailed or archived alone.

- :func:`write_report` (``results_dir``, the caller's :class:`ophora.tables.Table`, named video sets): what
  Table 1 (:mod:`benchmarks.table1.render`) and Table 2 (:mod:`downstream.table2.render`) call; the payload is
  ``results_dir/results.json`` unless given;
- :func:`write_evaluation_report`: the page of one ``python -m benchmarks.evaluate`` result file.

Videos of a row are matched by prompt: for each of the first ``max_prompts`` prompts of the first set that has
prompts, each set shows its first video with that prompt; a set without prompts (an unconditional model, a
plain folder) shows its video at the same position. At most ``max_videos`` sets per row; the rest are named.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks import metrics as registry
from benchmarks.report import media, page
from ophora.data.atomic import atomic_write_text
from ophora.data.sets import VideoSet, load_video_set
from ophora.results import plain, provenance, resolve_path
from ophora.tables import Column, Table

__all__ = ["write_report", "write_evaluation_report", "VideoRow", "video_rows", "REPORT_NAME"]

REPORT_NAME = "report.html"


@dataclass(frozen=True)
class VideoRow:
    """One prompt's videos: ``prompt`` (None for sets without prompts) and ``(label, path or None, note)``
    per set; ``left_out``: labels of the sets beyond the per-row cap."""

    prompt: str | None
    videos: tuple[tuple[str, Path | None, str], ...]
    left_out: tuple[str, ...] = ()


def _load(spec: str | Path) -> VideoSet | str:
    """The set, or why it cannot be read (a report shows what it can)."""
    try:
        return load_video_set(spec)
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}"


def video_rows(sets: Sequence[tuple[str, str | Path]], max_prompts: int = 3, max_videos: int = 8) -> list[VideoRow]:
    """Rows of videos for the same prompt across ``sets`` (label, spec); see the module docstring."""
    loaded = [(label, _load(spec)) for label, spec in sets]
    shown, left_out = loaded[:max_videos], tuple(label for label, _ in loaded[max_videos:])
    prompted = [s for _, s in shown if isinstance(s, VideoSet) and s.has_prompts]
    prompts: list[str | None] = list(dict.fromkeys(i.prompt for i in prompted[0].items))[:max_prompts] \
        if prompted else [None] * min(max_prompts, max((len(s) for _, s in shown if isinstance(s, VideoSet)),
                                                      default=0))
    rows = []
    for position, prompt in enumerate(prompts):
        videos = []
        for label, video_set in shown:
            if isinstance(video_set, str):
                videos.append((label, None, f"set not readable: {video_set}"))
            elif prompt is not None and video_set.has_prompts:
                item = next((i for i in video_set.items if i.prompt == prompt), None)
                videos.append((label, item.path if item else None, item.key if item else "no video for this prompt"))
            elif position < len(video_set):
                item = video_set.items[position]
                note = f"video {position + 1} of {len(video_set)}" + (" (no prompts)" if prompt is not None else "")
                videos.append((label, item.path, f"{item.key}: {note}"))
            else:
                videos.append((label, None, f"only {len(video_set)} video(s)"))
        rows.append(VideoRow(prompt, tuple(videos), left_out))
    return rows


def _videos_section(rows: list[VideoRow], size: int) -> str:
    parts = []
    for row in rows:
        cells = []
        for label, path, note in row.videos:
            if path is None:
                cells.append(page.video_cell(label, None, None, note))
                continue
            try:
                shown = media.clip(path, size=size)
            except (OSError, ValueError, RuntimeError) as err:
                cells.append(page.video_cell(label, None, None, f"not readable: {err}"))
                continue
            caption = (f"{note}; {shown.frames} frames {shown.height}x{shown.width} at {shown.fps:g} fps "
                       f"(first {shown.shown_frames} shown)")
            cells.append(page.video_cell(label, shown.uri, shown.size, caption))
        prompt = f"prompt: {row.prompt}" if row.prompt is not None else "no prompts: videos at the same position"
        left = f" (not shown: {', '.join(row.left_out)})" if row.left_out else ""
        parts.append(f'<p class="prompt">{page.esc(prompt + left)}</p><div class="videos">{"".join(cells)}</div>')
    return "\n".join(parts)


def _figures(images: Sequence[Path]) -> str:
    return "\n".join(page.figure_html(media.png_uri(p), p.name) for p in images)


def _protocols_section(payload: Mapping[str, Any]) -> str:
    protocols = dict(payload.get("protocols") or {})
    for name, metric in (payload.get("metrics") or {}).items():  # an evaluation keeps them per metric
        if isinstance(metric, Mapping) and isinstance(metric.get("protocol"), Mapping):
            protocols.setdefault(name, metric["protocol"])
    rows = [(name, p.get("name"), p.get("version"), p.get("detector") or "-", p.get("comparable") or "",
             ", ".join(f"{k}={v}" for k, v in p.items() if k not in ("name", "version", "detector", "metric",
                                                                        "comparable")))
            for name, p in protocols.items()]
    detectors = payload.get("detectors") or {}
    out = [page.key_table(("column", "protocol", "version", "detector", "comparable", "fields"), rows)] if rows else []
    if detectors:
        out.append(page.key_table(("detector of", "identifier", "sha256", "comparable with literature"),
                                  [(k, d.get("identifier"), d.get("sha256"), d.get("comparable_with_literature"))
                                   for k, d in detectors.items()]))
    extra = payload.get("beyond")
    if isinstance(extra, Mapping) and (extra.get("protocols") or extra.get("detectors")):
        out.append(f"<p>{page.esc(extra.get('title') or 'Beyond the paper')}: protocols and detectors</p>")
        out.append(_protocols_section({"protocols": extra.get("protocols"), "detectors": extra.get("detectors")}))
    return "\n".join(out)


def _sizes_section(payload: Mapping[str, Any]) -> str:
    """Geometry and N: the evaluation geometry, the real set, and the videos behind each value."""
    out = []
    if payload.get("geometry"):
        out.append("<p>Geometry every set was brought to:</p>" + page.fields_html(payload["geometry"]))
    if payload.get("real"):
        out.append("<p>Real reference set:</p>" + page.fields_html(payload["real"]))
    if payload.get("inputs"):
        out.append(page.key_table(("set", "spec", "kind", "videos", "fingerprint"),
                                  [(k, v.get("spec"), v.get("kind"), v.get("videos"), v.get("fingerprint"))
                                   for k, v in payload["inputs"].items()]))
    rows = payload.get("rows") if isinstance(payload.get("rows"), list) else None
    if rows and all(isinstance(r, Mapping) and "metrics" in r for r in rows):
        out.append("<p>Videos behind each value (N real / N generated):</p>" + page.key_table(
            ("row", *sorted({m for r in rows for m in r["metrics"]})),
            [(r.get("name"), *(_n_text(r["metrics"].get(m)) for m in sorted({m for x in rows for m in x["metrics"]})))
             for r in rows]))
        beyond_keys = sorted({k for r in rows for k in ((r.get("beyond") or {}).get("metrics") or {})})
        if beyond_keys:
            out.append("<p>Videos behind each beyond-the-paper value (N real / N generated):</p>" + page.key_table(
                ("row", *beyond_keys), [(r.get("name"), *(_n_text(((r.get("beyond") or {}).get("metrics") or {})
                                                                   .get(k)) for k in beyond_keys)) for r in rows]))
    elif isinstance(payload.get("metrics"), Mapping):
        out.append(page.key_table(("metric", "N real", "N generated"),
                                  [(k, m.get("n_real", "-"), m.get("n_fake", "-"))
                                   for k, m in payload["metrics"].items()]))
    if payload.get("n"):
        out.append(page.fields_html(payload["n"]))
    return "\n".join(out)


def _n_text(metric: Mapping[str, Any] | None) -> str:
    if not metric:
        return "-"
    return f"{metric.get('n_real', '-')} / {metric.get('n_fake', '-')}"


def _provenance_section(payload: Mapping[str, Any], config: Any) -> str:
    record = payload.get("provenance") or provenance()
    fields = {"git commit": record.get("git_commit"), "created (UTC)": record.get("created_utc"),
              "python": record.get("python"), "platform": record.get("platform"), "seed": payload.get("seed")}
    packages = record.get("packages") or {}
    out = [page.fields_html(fields)]
    if packages:
        out.append(page.key_table(("package", "version"), sorted(packages.items())))
    configuration = payload.get("config") if config is None else plain(config)
    if configuration:
        out.append(page.details_json("config", configuration))
    if payload.get("timings_s"):
        out.append(page.details_json("timings (s)", payload["timings_s"]))
    return "\n".join(out)


def _banner(payload: Mapping[str, Any]) -> str:
    if payload.get("comparable_with_literature") is False:
        return ("Not comparable with published numbers: at least one detector is random-init, custom or "
                "surgical-domain (see Protocols).")
    return ""


def _read_payload(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def write_report(results_dir: str | os.PathLike, *, table: Table | None = None,
                 video_sets: Sequence[tuple[str, str | Path]] = (), payload: Mapping[str, Any] | None = None,
                 config: Any = None, title: str | None = None, figures: Sequence[str | Path] | None = None,
                 html: str | os.PathLike | None = None, max_prompts: int = 3, max_videos: int = 8,
                 video_size: int = 128, tables: Sequence[tuple[str, str, Table]] = ()) -> Path:
    """Write ``results_dir/report.html`` (atomically) and return its path; see the module docstring.

    ``table``: the caller's table; ``video_sets``: (label, set spec) in column order; ``payload``: the results
    (default ``results_dir/results.json``; provenance is taken now where it has none); ``config``: recorded
    when the payload has none; ``figures``: PNG files to embed (default: every ``*.png`` of ``results_dir``);
    ``html``: where to write (default ``results_dir/report.html``); ``tables``: further (title, anchor, table)
    sections after the table (Table 1's "Beyond the paper").
    """
    results_dir = Path(results_dir)
    payload = _read_payload(results_dir / "results.json") if payload is None else payload
    title = title or (table.title if table is not None and table.title else f"Results: {results_dir.name}")
    subtitle = str((payload.get("config") or {}).get("description") or "").strip() if isinstance(
        payload.get("config"), Mapping) else ""
    images = sorted(results_dir.glob("*.png")) if figures is None else [Path(f) for f in figures]
    contents = [("Table", "table", page.table_html(table) if table is not None else ""),
                *((name, anchor, page.table_html(extra)) for name, anchor, extra in tables),
                ("Figures", "figures", _figures(images)),
                ("Videos, side by side for the same prompt", "videos",
                 _videos_section(video_rows(video_sets, max_prompts, max_videos), video_size) if video_sets else ""),
                ("Protocols and detectors", "protocols", _protocols_section(payload)),
                ("Geometry and N", "sizes", _sizes_section(payload)),
                ("Provenance", "provenance", _provenance_section(payload, config))]
    sections = [page.section(title, content, anchor) for title, anchor, content in contents if content]
    target = Path(html) if html is not None else results_dir / REPORT_NAME
    return atomic_write_text(target, page.page(title, subtitle, sections, _banner(payload)))


def evaluation_table(payload: Mapping[str, Any]) -> Table:
    """One row, a column per metric: value [95% interval], best-direction arrows from the registry."""
    metrics = payload["metrics"]
    record: dict[str, Any] = {"set": "generated vs real"}
    columns = [Column("set", "", align="l")]
    for name, m in metrics.items():
        cls = registry.get(name)
        record[name] = m.get("value") if m.get("value") is None or math.isfinite(m["value"]) else None
        ci = m.get("ci") or {}
        record[f"{name}_low"], record[f"{name}_high"] = ci.get("low"), ci.get("high")
        columns.append(Column(name, cls.display_name, number=True, decimals=4, interval=(f"{name}_low",
                                                                                        f"{name}_high")))
    notes = tuple(f"{name}: {w}" for name, m in metrics.items() for w in m.get("warnings") or [])
    return Table(tuple(columns), (record,), title="Evaluation", notes=notes + tuple(payload.get("notes") or ()))


def write_evaluation_report(result_file: str | os.PathLike, html: str | os.PathLike | None = None,
                            **options: Any) -> Path:
    """The page of one evaluation result file (``python -m benchmarks.evaluate --out FILE``), written beside it
    as ``<stem>.html`` unless ``html`` is given; its videos: the real and the generated set, by prompt."""
    import json

    result_file = Path(result_file)
    payload = json.loads(result_file.read_text())
    sets = []
    for role, label in (("real", "real"), ("fake", "generated")):
        spec = (payload.get("inputs") or {}).get(role, {}).get("spec")
        if spec:
            sets.append((label, _resolved_spec(spec, payload, result_file)))
    return write_report(result_file.parent, table=evaluation_table(payload), video_sets=sets, payload=payload,
                        title=f"Evaluation: {result_file.name}", figures=(),
                        html=result_file.with_suffix(".html") if html is None else html, **options)


def _resolved_spec(spec: str, payload: Mapping[str, Any], result_file: Path) -> str:
    """A set spec as written in a result file, with ``$root/...`` paths made absolute again."""
    prefix = "external:" if spec.startswith("external:") else ""
    text = spec[len(prefix):]
    path, sep, query = text.partition("?")
    if path.startswith("$") or not os.path.isabs(path):
        try:
            path = str(resolve_path(path, payload, result_file))
        except KeyError:
            return spec
    return prefix + path + sep + query
