"""OphVL-like raw narrated set: CSV ``clip_id,caption,source_video,start,end,path``.

``start``/``end`` are seconds within ``source_video``; ``path`` is relative to the dataset root.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ophora.data.manifests._common import (
    CsvTable,
    ManifestError,
    PathLike,
    _absolute,
    _check_unique,
    _escape_problem,
    _parse_seconds,
    _relative_to_root,
    _write_csv,
    quoted,
    read_csv_table,
)

__all__ = ["RAW_COLUMNS", "RawClip", "read_raw_set", "write_raw_set"]

RAW_COLUMNS = ("clip_id", "caption", "source_video", "start", "end", "path")


@dataclass(frozen=True)
class RawClip:
    """One narrated clip: ``start``/``end`` in seconds within ``source_video``; ``path`` absolute."""

    clip_id: str
    caption: str
    source_video: str
    start: float
    end: float
    path: Path


def read_raw_set(
    csv_path: PathLike,
    root: PathLike | None = None,
    check_files: bool = True,
    allow_empty_captions: bool = False,
) -> list[RawClip]:
    """Read a raw narrated set CSV (``clip_id,caption,source_video,start,end,path``; seconds).

    ``root`` defaults to the CSV's folder; ``path`` is relative to it. ``allow_empty_captions`` lets curation
    read rows without a caption so it can drop them itself, with a reason.
    """
    table = read_csv_table(csv_path, RAW_COLUMNS, hints={"clip_id": "clip id"})
    root = _absolute(root if root is not None else table.path.parent)
    _check_unique(table, "clip_id", "clip id")
    positions = [table.header.index(name) for name in RAW_COLUMNS]
    clips = []
    for index, row in enumerate(table.rows):
        cells = dict(zip(RAW_COLUMNS, (row[position] for position in positions)))
        clips.append(_raw_clip(table, index, root, cells, check_files, allow_empty_captions))
    return clips


def _raw_clip(
    table: CsvTable, index: int, root: Path, cells: dict[str, str], check_files: bool, allow_empty: bool
) -> RawClip:
    for column in ("clip_id", "source_video"):
        if not cells[column].strip():
            raise table.error(index, column, f"expected a non-empty {column}, found {quoted(cells[column])}")
    if not allow_empty and not cells["caption"].strip():
        raise table.error(index, "caption", f"expected a non-empty caption, found {quoted(cells['caption'])} "
                                            "(pass allow_empty_captions=True to read such rows)")
    start = _parse_seconds(table, index, "start", cells["start"])
    end = _parse_seconds(table, index, "end", cells["end"])
    if start < 0:
        raise table.error(index, "start", f"start ({start}) must be >= 0 seconds")
    if end <= start:
        raise table.error(index, "end", f"end ({end}) must be greater than start ({start})")
    path = _dataset_file(table, index, "path", root, cells["path"], check_files)
    return RawClip(cells["clip_id"], cells["caption"], cells["source_video"], start, end, path)


def _dataset_file(table: CsvTable, index: int, column: str, root: Path, relative: str, check: bool) -> Path:
    """Absolute path of ``relative`` under ``root``; rejects escapes and, with ``check``, missing files."""
    problem = _escape_problem(relative)
    if problem:
        raise table.error(index, column, f"path {problem}")
    path = _absolute(root / relative)
    if check and not path.is_file():
        raise table.error(index, column, f"file not found: expected {path}")
    return path


def write_raw_set(csv_path: PathLike, clips: Iterable[RawClip], root: PathLike | None = None) -> Path:
    """Write ``clips`` as a raw narrated set CSV, atomically; paths are written relative to ``root``.

    ``root`` defaults to the CSV's folder. Empty captions are written (curation may keep them for a report).
    """
    csv_path = _absolute(csv_path)
    root = _absolute(root if root is not None else csv_path.parent)
    rows = []
    first_seen: dict[str, int] = {}
    for row, clip in enumerate(clips, start=1):
        rows.append(_raw_row_for_write(csv_path, root, row, clip, first_seen))
    return _write_csv(csv_path, RAW_COLUMNS, rows)


def _raw_row_for_write(
    csv_path: Path, root: Path, row: int, clip: RawClip, first_seen: dict[str, int]
) -> list[str]:
    def fail(column: str, message: str) -> ManifestError:
        return ManifestError(csv_path, message, row=row, field=column)

    if not clip.clip_id.strip():
        raise fail("clip_id", "clip id is empty")
    if clip.clip_id in first_seen:
        raise fail("clip_id", f"duplicate clip id {quoted(clip.clip_id)}; already used by row "
                              f"{first_seen[clip.clip_id]}")
    first_seen[clip.clip_id] = row
    if not (math.isfinite(clip.start) and math.isfinite(clip.end)) or clip.start < 0:
        raise fail("start", f"expected finite seconds with start >= 0, found start={clip.start}, end={clip.end}")
    if clip.end <= clip.start:
        raise fail("end", f"end ({clip.end}) must be greater than start ({clip.start})")
    relative = _relative_to_root(root, clip.path)
    if relative is None:
        raise fail("path", f"path {clip.path} is not a file inside the dataset root {root}")
    return [clip.clip_id, clip.caption, clip.source_video, repr(float(clip.start)), repr(float(clip.end)), relative]
