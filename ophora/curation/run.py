"""``curate``: one call from a raw narrated set to the curated sets, provenance and report (resumable).

A run into a folder that holds an earlier run's ledger curates only what that run did not finish: clips
without a record, clips that failed (a stage could not evaluate them) and clips whose row or file changed
since (see :mod:`ophora.curation.ledger`). One run at a time may write into a folder (a lock file says so).
A run where every clip that reached some stage failed there, or with ``execution.strict`` any failed clip,
writes its outputs and then raises :class:`CurationFailed`.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

from ophora.curation.config import CurationConfig, plain
from ophora.curation.executor import execute, plan_shards
from ophora.curation.inputs import load_items
from ophora.curation.ledger import last_run, read_ledgers
from ophora.curation.outputs import (
    provenance_table,
    remove_partial_files,
    write_provenance,
    write_report,
    write_set,
)
from ophora.curation.pipeline import STAGE_NAMES
from ophora.data.atomic import atomic_write_text
from ophora.results import write_json

__all__ = ["curate", "ResumeError", "CurationFailed", "OutputBusyError"]


class ResumeError(ValueError):
    """The output folder holds a run made with other stage settings."""


class OutputBusyError(RuntimeError):
    """Another curation run is writing into the output folder."""


class CurationFailed(RuntimeError):
    """The run ended with failed clips that make it a failure (see the module docstring); ``summary`` is the
    run's summary, as written to ``run.json``."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


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

    Clips finished by an earlier run in ``out`` from the same input are not curated again (see the module
    docstring). Returns the summary that is also written to ``out/run.json``; raises :class:`CurationFailed`
    (after writing the outputs) when the run failed.
    """
    config = config or CurationConfig()
    out, input_csv = Path(out).absolute(), Path(input_csv).absolute()
    ledger_dir = out / ".ledger"
    with _only_run_in(out):
        remove_partial_files(out)
        items, notes = load_items(input_csv, out)
        _check_resume(ledger_dir, config)
        previous = read_ledgers(ledger_dir)
        done = {item.clip_id for item in items if _finished(previous.get(item.clip_id), item.fingerprint)}
        shards = plan_shards(items, config.execution.shard_size, done, run=last_run(previous) + 1)
        execute(config, shards, ledger_dir, total=len(items), done=len(done), progress=progress)
        records = read_ledgers(ledger_dir)
        missing = [item.clip_id for item in items if records.get(item.clip_id, {}).get("input") != item.fingerprint]
        if missing:
            raise RuntimeError(f"{len(missing)} clip(s) have no ledger record after the run, e.g. {missing[:3]}")
        summary = _write_outputs(items, records, out, input_csv, config, notes, len(done))
    problem = _failure(summary, config.execution.strict)
    if problem:
        raise CurationFailed(f"{problem}; failed clips are not recorded as finished: once the cause is fixed, "
                             f"the same command retries them (report: {out / 'report.md'})", summary)
    return summary


def _finished(record: dict | None, fingerprint: str) -> bool:
    """Whether ``record`` finishes the clip: made from the same input, and not failed."""
    return record is not None and record.get("input") == fingerprint and not _failed(record)


def _failed(record: dict) -> bool:
    return record.get("failed", any(v["status"] == "error" for v in record["verdicts"]))


def _failure(summary: dict, strict: bool) -> str | None:
    """Why the run counts as failed, or None (see the module docstring)."""
    if not summary["failed"]:
        return None
    for stage in summary["stages"]:
        if stage["entered"] and stage["errors"] == stage["entered"]:
            example = next(r["reason"] for r in summary["failure_reasons"] if r["stage"] == stage["stage"])
            return (f"every clip that reached the {stage['stage']} stage failed there ({stage['errors']} "
                    f"clip(s)), e.g. {example}")
    if strict:
        first = summary["failure_reasons"][0]
        return (f"{summary['failed']} of {summary['input']} clips failed (execution.strict), e.g. in the "
                f"{first['stage']} stage: {first['reason']}")
    return None


@contextlib.contextmanager
def _only_run_in(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (an advisory lock, released by the OS when the process dies, ``kill -9`` included)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputBusyError(f"another curation run is writing into {out}; wait for it to end or use "
                                  "another --out folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _most_common_per_stage(reasons: Counter, count: int) -> list[dict]:
    """The ``count`` most common failure reasons of each stage, most common first."""
    kept, per_stage = [], Counter()
    for (stage, reason), clips in reasons.most_common():
        if per_stage[stage] < count:
            per_stage[stage] += 1
            kept.append({"stage": stage, "reason": reason, "clips": clips})
    return kept


def _write_outputs(items, records, out, input_csv, config, notes, resumed) -> dict:
    by_id = {item.clip_id: item for item in items}
    ordered = [records[item.clip_id] for item in items]
    write_set(out / "ophora_160k", by_id, [r for r in ordered if r["in_160k"]], config.output.link)
    write_set(out / "ophora_28k", by_id, [r for r in ordered if r["in_28k"]], config.output.link)
    table = provenance_table(items, records)
    write_provenance(table, out)
    versions = {v["stage"]: v["version"] for r in ordered for v in r["verdicts"]}
    failed = [r for r in ordered if _failed(r)]
    reasons = Counter(next((v["stage"], v["reason"]) for v in r["verdicts"] if v["status"] == "error")
                      for r in failed)
    if failed:
        notes = notes + [f"{len(failed)} clip(s) failed (a stage could not evaluate them); they are not recorded "
                         "as finished, and the next run into this folder retries them"]
    summary = write_report(table, out, input_csv, versions, notes)
    summary.update(input_csv=str(input_csv), resumed_clips=resumed, versions=versions, notes=notes,
                   failed=len(failed),
                   failure_reasons=_most_common_per_stage(reasons, 3))
    write_json(out / "run.json", summary, config=plain(config))
    return summary
