"""Table 1 of the Ophora paper end to end (``python -m benchmarks.table1``).

With no arguments it runs the ``demo`` config on the embedded OphSim world: build a training world (narrated raw
clips with planted defects) and a held-out world (the real reference set), curate the raw set into 160K- and
28K-style sets, train the tiny Ophora (TPT, TPT + P2FT) and tiny Endora and Bora on the raw and curated sets,
generate from the held-out instructions, score FID, FVD and CLIPScore against the held-out clips, and write
``results/table1/<config>/``: ``table.md``, ``table.csv``, ``table.tex``, ``results.json``, ``frame_grid.png``,
``metrics.png`` and ``report.html``. Every stage is cached by its inputs under ``runs/table1/<config>/`` (see
:mod:`benchmarks.table1.stages`), so a rerun takes seconds and a killed run resumes. ``--config paper`` first
lists every missing asset (:mod:`benchmarks.table1.preflight`), then runs the same stages.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import metrics as registry
from benchmarks.table1 import beyond, render
from benchmarks.table1.config import SURGICAL_PREFIX, Table1Config, load_table1_config
from benchmarks.table1.preflight import EqualNError, choose_n, format_missing, leakage, preflight
from benchmarks.table1.stages import Table1Run
from ophora.data.atomic import remove_stale_temporaries
from ophora.data.geometry import NATIVE, parse_geometry
from ophora.data.sets import load_video_set
from ophora.results import write_json
from ophora.weights import cache_dir

__all__ = ["run_table1", "load_table1_config", "Table1Config", "PreflightError", "EqualNError"]


class PreflightError(RuntimeError):
    """Assets a config needs are missing (the message lists each one, where it must be and how to get it)."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_table1(config: Table1Config, cache: str | Path | None = None, output: str | Path | None = None,
               progress: bool = True, log=_stderr) -> dict[str, Any]:
    """Run every stage of ``config`` and write the table files; returns the ``results.json`` payload."""
    missing = preflight(config)
    if missing:
        raise PreflightError(format_missing(missing, config))
    _quiet_libraries(progress)
    start = time.perf_counter()
    cache = Path(cache or Path(config.cache) / config.name)
    output = Path(output or Path(config.output) / config.name)
    for folder in (cache, output):  # files a killed run left half-written (live writers' files are kept)
        remove_stale_temporaries(folder, recursive=True)
    run = Table1Run(config, cache, log=log, progress=progress)
    sets = run.data_sets()
    leaks = leakage(config, sets, cache / "leakage")  # refuses held-out clips that leak from training sets
    prompts, _ = run.prompts(sets["real"])
    results = [run.videos(row, sets) for row in config.rows]
    equal_n = choose_n(config, {r.row.name: len(load_video_set(r.videos)) for r in results},
                       len(load_video_set(sets["real"])))  # refuses a row with fewer than the N required
    for result in results:
        run.evaluate(result, sets["real"], None, n=equal_n["n"] if equal_n else None)
    payload = _payload(config, run, results, sets, prompts, time.perf_counter() - start)
    payload["equal_n"] = equal_n
    payload["leakage"] = leaks.to_json()
    if config.metrics.beyond:
        columns = beyond.resolve_columns(config.metrics, config.source)
        payload["beyond"] = beyond.summary(columns, [r.beyond for r in results], len(beyond.plan_passes(columns)))
    if not run.is_main:
        return payload
    _write_outputs(config, output, payload, results, sets, prompts)
    log(f"Table 1 ({config.name}) -> {output}  [{payload['timings_s']['total']:.0f} s; "
        f"{sum(run.cache_hits.values())}/{len(run.cache_hits)} stages from cache]")
    return payload


def _quiet_libraries(progress: bool) -> None:
    """Tokenizer-truncation and model-loading chatter of diffusers/transformers would bury the stage log (the
    truncation itself is recorded: evaluation counts truncated prompts per video)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    if not progress:
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()


def _row_record(result) -> dict[str, Any]:
    record = _paper_record(result)
    if result.beyond is not None:
        record["beyond"] = {"metrics": {key: {k: v for k, v in m.items() if k not in ("detector", "protocol")}
                                        for key, m in result.beyond["metrics"].items()},
                            "failed": result.beyond["failed"], "passes": result.beyond["passes"]}
    return record


def _paper_record(result) -> dict[str, Any]:
    evaluation = result.evaluation
    return {
        "name": result.row.name,
        "origin": result.row.origin,
        "generator": result.row.generator,
        "external": result.row.external,
        "conditional": result.conditional,
        "prompts": None if result.row.prompts is None else dataclasses.asdict(result.row.prompts),
        "videos": result.videos,
        "training": [s.record for s in result.stages if "stage" in s.record],
        "generation": next((s.record for s in result.stages if "written_now" in s.record), None),
        "published": dict(result.row.published),
        "metrics": {name: {k: v for k, v in m.items() if k not in ("detector", "protocol")}  # once, at the top
                    for name, m in evaluation["metrics"].items()},
        "per_video": evaluation.get("per_video", {}),
        "failed": evaluation.get("failed", []),
        "inputs": evaluation["inputs"],
    }


def _payload(config, run, results, sets, prompts, seconds) -> dict[str, Any]:
    first = results[0].evaluation
    protocols: dict[str, Any] = {}
    detectors: dict[str, Any] = {}
    for r in results:
        protocols.update({name: m["protocol"] for name, m in r.evaluation["metrics"].items() if "protocol" in m})
        detectors.update(r.evaluation["detectors"])
    return {
        "table": config.name,
        "rows": [_row_record(r) for r in results],
        "protocols": protocols,
        "detectors": detectors,
        "comparable_with_literature": all(r.evaluation["comparable_with_literature"] for r in results),
        "geometry": first.get("geometry", NATIVE.to_dict()),  # one for every row (the config's metrics.geometry)
        "real": {"spec": str(sets["real"]), **first["inputs"]["real"]},
        "data_sets": {k: str(v) for k, v in sets.items()},
        "data_records": run.data_records,
        "prompts": {"n": len(prompts), "videos_per_prompt": config.prompts.videos_per_prompt,
                    "seed": config.prompts.seed, "first": prompts[0].text if prompts else None},
        "cache": {"folder": str(run.cache), "hits": run.cache_hits},
        "timings_s": {**run.timings, "total": round(seconds, 2)},
    }


def _notes(config: Table1Config, payload: dict[str, Any]) -> list[str]:
    n_real = payload["real"].get("videos")
    notes = [f"config `{config.name}` ({config.description.strip()})" if config.description else
             f"config `{config.name}`",
             f"real reference set: {n_real} clips; prompts: {payload['prompts']['n']} x "
             f"{payload['prompts']['videos_per_prompt']} video(s) per row; values with 95% bootstrap intervals "
             f"over videos; '-': not applicable (unconditional model, no CLIPScore)",
             f"geometry (every row and the real set, before the detectors): "
             f"{parse_geometry(dict(payload['geometry'])).summary()}"]
    equal_n = payload.get("equal_n")
    if equal_n:
        how = (f"the largest N every row and the real set have, at most {equal_n['requested']}"
               if equal_n["n"] < equal_n["requested"] else f"N = {equal_n['requested']} required")
        notes.append(f"equal N: every row and the real set scored on N = {equal_n['n']} videos drawn with seed "
                     f"{equal_n['seed']} ({how})")
    surgical = any(k.startswith(SURGICAL_PREFIX) for k in payload["protocols"])
    published = {k: d for k, d in payload["detectors"].items() if not k.startswith(SURGICAL_PREFIX)}
    if not all(d["comparable_with_literature"] for d in published.values()):
        notes.append("FID, FVD, CLIPScore: detectors are random-init stand-ins (no published weights on this "
                     "machine): these columns rank nothing and are not comparable with any published number")
    if surgical:
        notes.append("(surgical) columns: the suite's surgical detectors, trained on OphSim worlds no evaluation "
                     "uses (`ophsim-surgical` protocols; R@1: text-to-video retrieval recall at 1 within each "
                     "row's videos); what they respond to is measured by `python -m benchmarks.sanity` "
                     "(results/sanity/); not comparable with published numbers")
    if any(r["published"] for r in payload["rows"]):
        notes.append("paper columns: the published Table 1 (poster OCR, REFERENCE.md section 1)")
    return notes


def _detector_stamp(payload: dict[str, Any]) -> str:
    """One line naming each column's detector (``random-init:...``, ``ophsim-surgical:...`` or the published
    file), so a figure shown alone still says what made its numbers."""
    parts = [f"{key}: {':'.join(str(d.get('identifier', '?')).split(':')[:2])}"
             for key, d in sorted(payload["detectors"].items())]
    return "detectors: " + ", ".join(parts)


def _columns(config: Table1Config) -> list[str]:
    """Table 1's metric columns: the paper's, then the surgical ones (``surgical_<metric>``)."""
    metrics = [m for m in registry.names() if m in config.metrics.metrics]
    return metrics + [f"{SURGICAL_PREFIX}{m}" for m in registry.names() if m in config.metrics.surgical]


def _write_outputs(config, output: Path, payload, results, sets, prompts) -> None:
    output.mkdir(parents=True, exist_ok=True)
    metrics = _columns(config)
    table = render.table_rows(payload["rows"], metrics)
    notes = _notes(config, payload)
    render.write_markdown(output / "table.md", table, metrics, notes)
    render.write_csv(output / "table.csv", table, metrics)
    render.write_latex(output / "table.tex", table, metrics,
                       f"Table 1 ({config.name}): video generation quality. " + " ".join(notes[1:2]))
    grid_rows = [("Real (held-out)", load_video_set(sets["real"]).items[0].path)]
    for result in results:
        items = load_video_set(result.videos).items
        grid_rows.append((result.row.name, items[0].path if items else None))
    render.frame_grid(output / "frame_grid.png", grid_rows, prompts[0].text if prompts else "", config.grid_frames)
    render.metric_chart(output / "metrics.png", table, metrics, f"Table 1 ({config.name})\n{_detector_stamp(payload)}")
    extra = _write_beyond(config, output, payload) if payload.get("beyond") else ()
    write_json(output / "results.json", payload, config=config, seed=config.seed,
               roots={"$work": payload["cache"]["folder"], "$cache": cache_dir()})
    render.write_report(output, table, metrics, notes, [("Real (held-out)", sets["real"])]
                        + [(r.row.name, r.videos) for r in results], f"Table 1 ({config.name})", extra=extra)


def _write_beyond(config, output: Path, payload) -> tuple:
    """``table_beyond.md/.csv/.tex`` and ``metrics_beyond.png``; returns the report's extra section."""
    summary = payload["beyond"]
    columns = summary["columns"]
    fvd_column = dict(config.metrics.protocols).get("fvd") or registry.get("fvd").protocols[0].name
    notes = beyond.notes(summary, fvd_column, payload["rows"])
    records = beyond.table_records(payload["rows"], columns)
    table = beyond.table(records, columns, notes)
    caption = f"Beyond the paper ({config.name}): video metrics the Ophora paper does not report. " + \
        notes[0].split(": ", 1)[1]
    render.write_table_files(output, "table_beyond", beyond.table(records, columns, notes, title=f"Beyond the "
                                                                                           f"paper ({config.name})"),
                             beyond.csv_fields(columns), beyond.table(records, columns, caption=caption))
    render.metric_chart(output / "metrics_beyond.png", records, [c["key"] for c in columns],
                        f"Beyond the paper ({config.name})\n{_detector_stamp(summary)}",
                        headers={c["key"]: beyond.header(c) for c in columns})
    return (("Beyond the paper", "beyond", table),)
