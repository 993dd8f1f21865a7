"""``curate``: one call from a raw narrated set to the curated sets, provenance and report (resumable)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ophora.curation.config import CurationConfig, plain
from ophora.curation.executor import execute, plan_shards
from ophora.curation.inputs import load_items
from ophora.curation.ledger import read_ledgers
from ophora.curation.outputs import provenance_table, write_provenance, write_report, write_set
from ophora.curation.pipeline import STAGE_NAMES
from ophora.data.atomic import atomic_write_text
from ophora.results import write_json

__all__ = ["curate", "ResumeError"]


class ResumeError(ValueError):
    """The output folder holds a run made with other stage settings."""


def _stage_settings(config: CurationConfig) -> str:
    return json.dumps({name: plain(getattr(config, name), digest=True) for name in STAGE_NAMES},
                      sort_keys=True, indent=1)


def _check_resume(ledger_dir: Path, config: CurationConfig) -> None:
    """Refuse to mix verdicts made with different stage settings in one output folder."""
    settings, wanted = ledger_dir / "settings.json", _stage_settings(config)
    if settings.exists() and settings.read_text() != wanted:
        raise ResumeError(f"{ledger_dir.parent} holds a curation run made with other stage settings "
                          f"(see {settings}); use a new --out folder, or delete {ledger_dir} to start over")
    atomic_write_text(settings, wanted)


def curate(input_csv: str | os.PathLike, out: str | os.PathLike, config: CurationConfig | None = None,
           progress: bool = True) -> dict:
    """Curate the raw set ``input_csv`` into ``out`` (see :mod:`ophora.curation.outputs` for the layout).

    Clips already in ``out/.ledger`` (from an interrupted run) are not curated again. Returns the summary
    that is also written to ``out/run.json``.
    """
    config = config or CurationConfig()
    out, input_csv = Path(out).absolute(), Path(input_csv).absolute()
    ledger_dir = out / ".ledger"
    items, notes = load_items(input_csv, out)
    _check_resume(ledger_dir, config)
    done = set(read_ledgers(ledger_dir))
    shards = plan_shards(items, config.execution.shard_size, done)
    resumed = sum(item.clip_id in done for item in items)
    execute(config, shards, ledger_dir, total=len(items), done=resumed, progress=progress)
    records = read_ledgers(ledger_dir)
    missing = [item.clip_id for item in items if item.clip_id not in records]
    if missing:
        raise RuntimeError(f"{len(missing)} clip(s) have no ledger record after the run, e.g. {missing[:3]}")
    return _write_outputs(items, records, out, input_csv, config, notes, resumed)


def _write_outputs(items, records, out, input_csv, config, notes, resumed) -> dict:
    by_id = {item.clip_id: item for item in items}
    ordered = [records[item.clip_id] for item in items]
    write_set(out / "ophora_160k", by_id, [r for r in ordered if r["in_160k"]], config.output.link)
    write_set(out / "ophora_28k", by_id, [r for r in ordered if r["in_28k"]], config.output.link)
    table = provenance_table(items, records)
    write_provenance(table, out)
    versions = {v["stage"]: v["version"] for r in ordered for v in r["verdicts"]}
    summary = write_report(table, out, input_csv, versions, notes)
    summary.update(input_csv=str(input_csv), resumed_clips=resumed, versions=versions, notes=notes)
    write_json(out / "run.json", summary, config=plain(config))
    return summary
