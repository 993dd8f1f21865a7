"""Per-shard append-only ledgers: what makes a curation run resumable after any crash, ``kill -9`` included.

Each curated clip is one JSON line appended to ``<out>/.ledger/shard-<k>.jsonl`` with a single ``write`` and
an ``fsync`` before the next clip starts, so a clip is either wholly in the ledger or not at all; a killed
run can leave at most one partial last line per shard, which :func:`read_ledgers` ignores and
:func:`repair_ledger` cuts off.

A record says which run wrote it (``run``: 1, 2, ...), what input it was made from (``input``: the clip's
fingerprint, :func:`ophora.curation.inputs.fingerprint`) and whether the clip ``failed`` (a stage could not
evaluate it). A resumed run skips a clip only when its latest record is from the same input and did not fail,
so nothing is lost (clips without a complete line, failed clips and changed clips are curated again) and
nothing finished is duplicated. A clip curated again gets a new line; the latest run's line wins.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["Ledger", "read_ledgers", "last_run", "repair_ledger", "ledger_path"]


def ledger_path(folder: str | os.PathLike, shard: int) -> Path:
    return Path(folder) / f"shard-{shard:05d}.jsonl"


class Ledger:
    """Appends records to one shard file. Use as a context manager; one writer per shard at a time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_ledger(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict) -> None:
        """Write ``record`` as one line and fsync it (durable before the call returns)."""
        data = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _complete_lines(data: bytes) -> tuple[list[dict], int]:
    """Records of the complete, parseable lines and the byte length of the complete part."""
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a torn line followed by a newline from a later append cannot happen; be safe
            continue
    return records, end


def repair_ledger(path: str | os.PathLike) -> int:
    """Cut a partial last line off ``path``; returns the number of bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    _, end = _complete_lines(data)
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    return len(data) - end


def read_ledgers(folder: str | os.PathLike) -> dict[str, dict]:
    """The latest complete record of each clip in ``folder/shard-*.jsonl``, by clip id: the one of the highest
    ``run`` (records without one count as run 0); within a run, the first one (a task that a cluster ran twice
    writes the same verdicts twice)."""
    records: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("shard-*.jsonl")):
        for record in _complete_lines(path.read_bytes())[0]:
            known = records.get(record["clip_id"])
            if known is None or record.get("run", 0) > known.get("run", 0):
                records[record["clip_id"]] = record
    return records


def last_run(records: dict[str, dict]) -> int:
    """The highest ``run`` in ``records`` (0 when empty)."""
    return max((record.get("run", 0) for record in records.values()), default=0)
