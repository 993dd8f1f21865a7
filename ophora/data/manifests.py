"""Typed, validated readers and writers for every dataset layout the suite reads or writes.

Formats (one section each below):

1. Ophora-160K instruction set: ``<root>/<name>.csv`` with header ``clip id,instruction`` and clips at
   ``<root>/clips/<clip id>.mp4`` (Hugging Face General-Medical-AI/Ophora-160K).
2. OphVL-like raw narrated set: CSV ``clip_id,caption,source_video,start,end,path`` (seconds; path relative
   to the dataset root).
3. CogVideoX fine-tuning layout: ``<root>/prompts.txt`` and ``<root>/videos.txt``, line i of each describing
   the same video (diffusers examples/cogvideo, cogvideox-factory).
4. OphNet2024 labelled clips: CSV ``video_id,start,end,split,surgery_id,phase_id[,operation_id][,segment_path]``
   returned as a typed ``pandas.DataFrame``.
5. Generated-video folders: ``<folder>/manifest.jsonl``, one JSON object per video.

Every problem raises :class:`ManifestError` naming the file, the 1-based data row, the line of the file where
that row starts, and the column or field. The first problem raises; nothing is dropped silently.

CSV files are parsed with the standard ``csv`` module rather than ``pandas.read_csv``: pandas silently pads
rows with too few fields (with ``keep_default_na=False``), turns the first column into the index when every row
has one field too many, and cannot say on which line a record with an embedded newline starts. Values are kept
as text until validated, so ids such as ``case_0002`` and captions such as ``NA`` are never mangled. CSV files
are written with ``pandas.DataFrame.to_csv`` and ``\\r\\n`` line ends (RFC 4180), which quotes every field
holding a comma, quote, ``\\r`` or ``\\n``, so captions round-trip exactly.

Paths inside manifests are relative to the dataset root; readers return absolute :class:`pathlib.Path`s.
Escape checks are lexical (``..`` is normalised away, symlinks are not followed), so a dataset whose
``clips/`` is a symlink to other storage still reads, while ``../x.mp4`` or ``/etc/x`` are rejected.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import posixpath
import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ophora.data.atomic import atomic_path

__all__ = [
    "ManifestError",
    "InstructionClip",
    "read_instruction_set",
    "write_instruction_set",
    "RawClip",
    "read_raw_set",
    "write_raw_set",
    "CogVideoXItem",
    "read_cogvideox_set",
    "write_cogvideox_set",
    "OPHNET_SPLITS",
    "read_ophnet_csv",
    "write_ophnet_csv",
    "split_counts",
    "class_counts",
    "GeneratedVideo",
    "MANIFEST_NAME",
    "read_generated",
    "append_generated",
    "write_generated",
]

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


class ManifestError(ValueError):
    """A dataset file that does not match its format.

    Attributes: ``path`` (the file, or the dataset folder for problems spanning files), ``row`` (1-based
    data row or record, ``None`` if the problem is not in one row), ``line`` (1-based line of the file where
    that row starts, ``None`` when unknown, e.g. for rows about to be written), ``field`` (column or JSON field).
    """

    def __init__(
        self,
        path: PathLike,
        message: str,
        *,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
        field_kind: str = "column",
    ) -> None:
        self.path = Path(path)
        self.row = row
        self.line = line
        self.field = field
        self.reason = message
        self.field_kind = field_kind
        super().__init__(_format_location(self.path, row, line, field, field_kind) + ": " + message)

    def __reduce__(self):  # keep the attributes when sent between processes (multiprocessing pools)
        return _rebuild_manifest_error, (self.path, self.reason, self.row, self.line, self.field, self.field_kind)


def _rebuild_manifest_error(path, reason, row, line, field, field_kind) -> ManifestError:
    return ManifestError(path, reason, row=row, line=line, field=field, field_kind=field_kind)


def _format_location(path: Path, row: int | None, line: int | None, field: str | None, kind: str) -> str:
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
    elif line is not None:
        parts.append(f"line {line}")
    if field is not None:
        parts.append(f"{kind} '{field}'")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Shared helpers: paths
# ---------------------------------------------------------------------------------------------------------


def _absolute(path: PathLike) -> Path:
    """Absolute, lexically normalised path (``..`` removed, symlinks not followed)."""
    return Path(os.path.abspath(os.fspath(path)))


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _escape_problem(relative: str) -> str | None:
    """Why ``relative`` cannot name a file inside a dataset root, or ``None`` if it can."""
    if not relative.strip():
        return "is empty; expected a path relative to the dataset root"
    if PurePosixPath(relative).is_absolute() or _WINDOWS_DRIVE.match(relative):
        return f"{relative!r} is absolute; expected a path relative to the dataset root"
    normal = posixpath.normpath(relative)
    if normal == ".." or normal.startswith("../"):
        return f"{relative!r} leaves the dataset root"
    if normal == ".":
        return f"{relative!r} names the dataset root itself, not a file"
    return None


def _relative_to_root(root: Path, path: PathLike) -> str | None:
    """``path`` (absolute, or relative to ``root``) as a posix path relative to ``root``; None if outside."""
    absolute = _absolute(root / path)
    try:
        relative = absolute.relative_to(root)
    except ValueError:
        return None
    return None if relative == Path(".") else relative.as_posix()


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"expected a file at {path}")


# ---------------------------------------------------------------------------------------------------------
# Shared helpers: CSV tables
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _CsvTable:
    """Text cells of a CSV file plus where each data row starts, for error messages."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int | None]  # 1-based line on which data row i (0-based) starts; None for rows to be written

    def error(self, index: int, column: str | None, message: str) -> ManifestError:
        """ManifestError for 0-based data row ``index``."""
        return ManifestError(self.path, message, row=index + 1, line=self.lines[index], field=column)

    def where(self, index: int) -> str:
        line = self.lines[index]
        return f"row {index + 1}" + (f" (line {line})" if line is not None else "")

    def column(self, name: str) -> list[str]:
        position = self.header.index(name)
        return [row[position] for row in self.rows]


def _read_csv_table(
    path: PathLike,
    required: Sequence[str],
    hints: Mapping[str, str] | None = None,
) -> _CsvTable:
    """Parse a UTF-8 CSV (byte-order mark allowed); check its header and that every row has all fields.

    ``hints`` maps a required column to a common misspelling, which the error then points out.
    """
    path = _absolute(path)
    _require_file(path)
    try:
        header, rows, lines = _parse_csv(path)
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"expected UTF-8 text, found undecodable bytes ({exc.reason}) at byte "
                                  f"{exc.start}") from exc
    table = _CsvTable(path, header, rows, lines)
    _check_header(table, required, hints or {})
    _check_field_counts(table)
    return table


def _parse_csv(path: Path) -> tuple[list[str], list[list[str]], list[int | None]]:
    """Header, data rows and the start line of each data row; blank lines are skipped."""
    records: list[list[str]] = []
    lines: list[int | None] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        previous_end = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise ManifestError(path, f"malformed CSV ({exc})", line=reader.line_num) from exc
            if record:
                records.append(record)
                lines.append(previous_end + 1)
            previous_end = reader.line_num
    if not records:
        raise ManifestError(path, "file is empty; expected a header line")
    return records[0], records[1:], lines[1:]


def _check_header(table: _CsvTable, required: Sequence[str], hints: Mapping[str, str]) -> None:
    header = table.header
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ManifestError(table.path, f"header repeats column(s) {duplicates}; found columns {header}", line=1)
    missing = [name for name in required if name not in header]
    if not missing:
        return
    message = f"missing required column(s) {missing}; found columns {header}; expected {list(required)}"
    for name in missing:
        if hints.get(name) in header:
            message += f" (column {hints[name]!r} should be spelled {name!r})"
    raise ManifestError(table.path, message, line=1)


def _check_field_counts(table: _CsvTable) -> None:
    expected = len(table.header)
    for index, row in enumerate(table.rows):
        if len(row) != expected:
            raise table.error(index, None, f"expected {expected} fields (columns {table.header}), "
                                           f"found {len(row)}: {row}")


def _check_unique(table: _CsvTable, column: str, what: str) -> None:
    first_seen: dict[str, int] = {}
    for index, value in enumerate(table.column(column)):
        if value in first_seen:
            raise table.error(index, column, f"duplicate {what} {value!r}; already used by "
                                             f"{table.where(first_seen[value])}")
        first_seen[value] = index


def _parse_seconds(table: _CsvTable, index: int, column: str, text: str) -> float:
    """A finite float (seconds) from a cell, or a ManifestError naming the cell."""
    try:
        value = float(text)
    except ValueError:
        raise table.error(index, column, f"expected a number of seconds, found {text!r}") from None
    if not math.isfinite(value):
        raise table.error(index, column, f"expected a finite number of seconds, found {text!r}")
    return value


def _write_csv(path: PathLike, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """Write text cells atomically as UTF-8 CSV (no byte-order mark, ``\\r\\n`` line ends, minimal quoting)."""
    frame = pd.DataFrame(list(rows), columns=list(columns), dtype=object)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\r\n")
    return Path(path)


# ---------------------------------------------------------------------------------------------------------
# 1. Ophora-160K instruction set
# ---------------------------------------------------------------------------------------------------------

INSTRUCTION_COLUMNS = ("clip id", "instruction")
_CLIPS_FOLDER = "clips"
_CLIP_SUFFIX = ".mp4"


@dataclass(frozen=True)
class InstructionClip:
    """One Ophora-160K pair: ``path`` is the absolute path of ``<root>/clips/<clip_id>.mp4``."""

    clip_id: str
    instruction: str
    path: Path


def _clip_id_problem(clip_id: str) -> str | None:
    """Why ``clip_id`` cannot be a file name inside ``clips/``, or ``None`` if it can."""
    if not clip_id.strip():
        return "clip id is empty"
    if clip_id in (".", "..") or any(sep in clip_id for sep in ("/", "\\", "\0")):
        return f"clip id {clip_id!r} would leave {_CLIPS_FOLDER}/; expected a bare name such as 'X3jTUYMflCk_26'"
    return None


def _clip_path(root: Path, clip_id: str) -> Path:
    return root / _CLIPS_FOLDER / f"{clip_id}{_CLIP_SUFFIX}"


def read_instruction_set(
    csv_path: PathLike, root: PathLike | None = None, check_files: bool = True
) -> list[InstructionClip]:
    """Read an Ophora-160K CSV (header ``clip id,instruction``); clips live at ``<root>/clips/<id>.mp4``.

    ``root`` defaults to the CSV's folder. With ``check_files`` every clip must exist.
    """
    table = _read_csv_table(csv_path, INSTRUCTION_COLUMNS, hints={"clip id": "clip_id"})
    root = _absolute(root if root is not None else table.path.parent)
    _check_unique(table, "clip id", "clip id")
    existing = _existing_clip_names(root) if check_files else None
    clips = []
    for index, (clip_id, instruction) in enumerate(zip(table.column("clip id"), table.column("instruction"))):
        clips.append(_instruction_clip(table, index, root, clip_id, instruction, existing))
    return clips


def _existing_clip_names(root: Path) -> set[str]:
    """File names in ``<root>/clips`` (one directory listing instead of one stat per clip)."""
    folder = root / _CLIPS_FOLDER
    if not folder.is_dir():
        return set()
    return {entry.name for entry in os.scandir(folder) if entry.is_file()}


def _instruction_clip(
    table: _CsvTable, index: int, root: Path, clip_id: str, instruction: str, existing: set[str] | None
) -> InstructionClip:
    problem = _clip_id_problem(clip_id)
    if problem:
        raise table.error(index, "clip id", problem)
    if not instruction.strip():
        raise table.error(index, "instruction", f"expected a non-empty instruction, found {instruction!r}")
    path = _clip_path(root, clip_id)
    if existing is not None and path.name not in existing:
        raise table.error(index, "clip id", f"clip file not found: expected {path}")
    return InstructionClip(clip_id, instruction, path)


def write_instruction_set(
    csv_path: PathLike, clips: Iterable[InstructionClip], root: PathLike | None = None
) -> Path:
    """Write ``clips`` as an Ophora-160K CSV, atomically. Each path must be ``<root>/clips/<clip_id>.mp4``.

    ``root`` defaults to the CSV's folder. Clip files are not required to exist.
    """
    csv_path = _absolute(csv_path)
    root = _absolute(root if root is not None else csv_path.parent)
    clips = list(clips)
    first_seen: dict[str, int] = {}
    for row, clip in enumerate(clips, start=1):
        _check_instruction_for_write(csv_path, root, row, clip, first_seen)
    return _write_csv(csv_path, INSTRUCTION_COLUMNS, [(clip.clip_id, clip.instruction) for clip in clips])


def _check_instruction_for_write(
    csv_path: Path, root: Path, row: int, clip: InstructionClip, first_seen: dict[str, int]
) -> None:
    problem = _clip_id_problem(clip.clip_id)
    if problem:
        raise ManifestError(csv_path, problem, row=row, field="clip id")
    if clip.clip_id in first_seen:
        raise ManifestError(csv_path, f"duplicate clip id {clip.clip_id!r}; already used by row "
                                      f"{first_seen[clip.clip_id]}", row=row, field="clip id")
    first_seen[clip.clip_id] = row
    if not clip.instruction.strip():
        raise ManifestError(csv_path, f"expected a non-empty instruction, found {clip.instruction!r}",
                            row=row, field="instruction")
    expected = _clip_path(root, clip.clip_id)
    if _absolute(root / clip.path) != expected:
        raise ManifestError(csv_path, f"clip path must be {expected} (the layout fixes it from the clip id), "
                                      f"found {clip.path}", row=row, field="clip id")


# ---------------------------------------------------------------------------------------------------------
# 2. OphVL-like raw narrated set
# ---------------------------------------------------------------------------------------------------------

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
    table = _read_csv_table(csv_path, RAW_COLUMNS, hints={"clip_id": "clip id"})
    root = _absolute(root if root is not None else table.path.parent)
    _check_unique(table, "clip_id", "clip id")
    positions = [table.header.index(name) for name in RAW_COLUMNS]
    clips = []
    for index, row in enumerate(table.rows):
        cells = dict(zip(RAW_COLUMNS, (row[position] for position in positions)))
        clips.append(_raw_clip(table, index, root, cells, check_files, allow_empty_captions))
    return clips


def _raw_clip(
    table: _CsvTable, index: int, root: Path, cells: dict[str, str], check_files: bool, allow_empty: bool
) -> RawClip:
    for column in ("clip_id", "source_video"):
        if not cells[column].strip():
            raise table.error(index, column, f"expected a non-empty {column}, found {cells[column]!r}")
    if not allow_empty and not cells["caption"].strip():
        raise table.error(index, "caption", f"expected a non-empty caption, found {cells['caption']!r} "
                                            "(pass allow_empty_captions=True to read such rows)")
    start = _parse_seconds(table, index, "start", cells["start"])
    end = _parse_seconds(table, index, "end", cells["end"])
    if start < 0:
        raise table.error(index, "start", f"start ({start}) must be >= 0 seconds")
    if end <= start:
        raise table.error(index, "end", f"end ({end}) must be greater than start ({start})")
    path = _dataset_file(table, index, "path", root, cells["path"], check_files)
    return RawClip(cells["clip_id"], cells["caption"], cells["source_video"], start, end, path)


def _dataset_file(table: _CsvTable, index: int, column: str, root: Path, relative: str, check: bool) -> Path:
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
        raise fail("clip_id", f"duplicate clip id {clip.clip_id!r}; already used by row {first_seen[clip.clip_id]}")
    first_seen[clip.clip_id] = row
    if not (math.isfinite(clip.start) and math.isfinite(clip.end)) or clip.start < 0:
        raise fail("start", f"expected finite seconds with start >= 0, found start={clip.start}, end={clip.end}")
    if clip.end <= clip.start:
        raise fail("end", f"end ({clip.end}) must be greater than start ({clip.start})")
    relative = _relative_to_root(root, clip.path)
    if relative is None:
        raise fail("path", f"path {clip.path} is not a file inside the dataset root {root}")
    return [clip.clip_id, clip.caption, clip.source_video, repr(float(clip.start)), repr(float(clip.end)), relative]


# ---------------------------------------------------------------------------------------------------------
# 3. CogVideoX fine-tuning layout
# ---------------------------------------------------------------------------------------------------------


class CogVideoXItem(NamedTuple):
    """One training pair: the prompt and the absolute video path. Unpacks as ``prompt, path``."""

    prompt: str
    path: Path


def read_cogvideox_set(
    root: PathLike, prompts: str = "prompts.txt", videos: str = "videos.txt", check_files: bool = True
) -> list[CogVideoXItem]:
    """Read ``<root>/prompts.txt`` and ``<root>/videos.txt``: line i of each describes the same video.

    Every line must be non-empty (an empty line would shift every later pair). Video paths are relative
    to ``root``; with ``check_files`` each video must exist.
    """
    root = _absolute(root)
    prompt_lines = _read_lines(root / prompts, "prompt")
    video_lines = _read_lines(root / videos, "video")
    if len(prompt_lines) != len(video_lines):
        raise ManifestError(root, f"{prompts} has {len(prompt_lines)} lines but {videos} has "
                                  f"{len(video_lines)}; line i of each must describe the same video")
    items = []
    for number, (prompt, relative) in enumerate(zip(prompt_lines, video_lines), start=1):
        path = _cogvideox_video(root / videos, number, root, relative, check_files)
        items.append(CogVideoXItem(prompt, path))
    return items


def _read_lines(path: Path, field_name: str) -> list[str]:
    """Lines of a UTF-8 text file (``\\n``, ``\\r\\n`` or ``\\r`` ends; one final line end optional).

    An empty or whitespace-only line raises, naming its line number.
    """
    _require_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # universal newlines: \r\n and \r become \n
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"expected UTF-8 text, found undecodable bytes ({exc.reason}) at byte "
                                  f"{exc.start}") from exc
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n") if text else []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ManifestError(path, "line is empty; every line must hold one entry (an empty line would "
                                      "pair the wrong prompt with every later video)", row=number, line=number,
                                field=field_name, field_kind="field")
    return lines


def _cogvideox_video(videos_file: Path, number: int, root: Path, relative: str, check: bool) -> Path:
    problem = _escape_problem(relative)
    if problem:
        raise ManifestError(videos_file, f"video path {problem}", row=number, line=number, field="video",
                            field_kind="field")
    path = _absolute(root / relative)
    if check and not path.is_file():
        raise ManifestError(videos_file, f"video not found: expected {path}", row=number, line=number,
                            field="video", field_kind="field")
    return path


def write_cogvideox_set(
    root: PathLike,
    items: Iterable[CogVideoXItem | tuple[str, PathLike]],
    prompts: str = "prompts.txt",
    videos: str = "videos.txt",
) -> tuple[Path, Path]:
    """Write ``prompts.txt`` and ``videos.txt`` under ``root``; video paths are written relative to ``root``.

    Both files are renamed into place one right after the other, so a crash leaves at most a moment in which
    they disagree (the count check in :func:`read_cogvideox_set` catches most such states).
    """
    root = _absolute(root)
    prompt_lines, video_lines = [], []
    for number, (prompt, path) in enumerate(items, start=1):
        prompt_lines.append(_prompt_for_write(root / prompts, number, prompt))
        video_lines.append(_video_for_write(root / videos, number, root, path))
    with atomic_path(root / prompts) as prompts_tmp, atomic_path(root / videos) as videos_tmp:
        prompts_tmp.write_text("".join(line + "\n" for line in prompt_lines), encoding="utf-8")
        videos_tmp.write_text("".join(line + "\n" for line in video_lines), encoding="utf-8")
    return root / prompts, root / videos


def _prompt_for_write(path: Path, number: int, prompt: str) -> str:
    if "\n" in prompt or "\r" in prompt:
        raise ManifestError(path, f"prompt contains a line break, which would split it over two lines: "
                                  f"{prompt!r}", row=number, field="prompt", field_kind="field")
    if not prompt.strip():
        raise ManifestError(path, f"expected a non-empty prompt, found {prompt!r}", row=number, field="prompt",
                            field_kind="field")
    return prompt


def _video_for_write(path: Path, number: int, root: Path, video: PathLike) -> str:
    relative = _relative_to_root(root, video)
    if relative is None:
        raise ManifestError(path, f"video {video} is not a file inside {root}", row=number, field="video",
                            field_kind="field")
    if "\n" in relative or "\r" in relative:
        raise ManifestError(path, f"video path contains a line break: {relative!r}", row=number, field="video",
                            field_kind="field")
    return relative


# ---------------------------------------------------------------------------------------------------------
# 4. OphNet2024 labelled clips
# ---------------------------------------------------------------------------------------------------------

OPHNET_REQUIRED = ("video_id", "start", "end", "split", "surgery_id", "phase_id")
OPHNET_OPTIONAL = ("operation_id", "segment_path")
OPHNET_LABELS = ("surgery_id", "phase_id", "operation_id")
OPHNET_SPLITS = ("train", "val", "test")
_SPLIT_DTYPE = pd.CategoricalDtype(list(OPHNET_SPLITS))


def read_ophnet_csv(
    path: PathLike, videos_root: PathLike | None = None, check_files: bool = False
) -> pd.DataFrame:
    """Read an OphNet2024 CSV into a typed DataFrame, one row per clip.

    Columns: ``video_id`` (str), ``start``/``end`` (float64 seconds in the source video), ``split``
    (categorical train/val/test), ``surgery_id``/``phase_id``/``operation_id`` (int64, operation_id only
    if present), ``segment_path`` (str relative to ``videos_root``, only if present), then any extra columns
    as str. With ``check_files`` (which needs ``videos_root``) every segment file must exist; a CSV
    without ``segment_path`` lists no files, so there is nothing to check.
    """
    if check_files and videos_root is None:
        raise ValueError("check_files=True needs videos_root, the folder segment_path is relative to")
    table = _read_csv_table(path, OPHNET_REQUIRED)
    frame = _ophnet_frame(table)
    if "segment_path" in frame.columns:
        root = _absolute(videos_root) if videos_root is not None else None
        _check_segment_paths(table, frame["segment_path"].tolist(), root, check_files)
    return frame


def _ophnet_frame(table: _CsvTable) -> pd.DataFrame:
    """Typed, validated DataFrame from the text cells of an OphNet CSV."""
    present = [name for name in OPHNET_REQUIRED + OPHNET_OPTIONAL if name in table.header]
    extras = [name for name in table.header if name not in present]
    text = {name: table.column(name) for name in present + extras}
    _check_video_ids(table, text["video_id"])
    columns: dict[str, Any] = {"video_id": pd.Series(text["video_id"], dtype=str)}
    columns["start"], columns["end"] = _ophnet_times(table, text["start"], text["end"])
    columns["split"] = _ophnet_splits(table, text["split"])
    for name in OPHNET_LABELS:
        if name in text:
            columns[name] = _ophnet_labels(table, name, text[name])
    for name in [n for n in ("segment_path",) if n in text] + extras:
        columns[name] = pd.Series(text[name], dtype=str)
    frame = pd.DataFrame(columns)
    _check_one_split_per_video(table, frame)
    return frame


def _check_video_ids(table: _CsvTable, video_ids: list[str]) -> None:
    for index, video_id in enumerate(video_ids):
        if not video_id.strip():
            raise table.error(index, "video_id", f"expected a video id such as 'case_0002', found {video_id!r}")


def _ophnet_times(table: _CsvTable, starts: list[str], ends: list[str]) -> tuple[np.ndarray, np.ndarray]:
    start = np.array([_parse_seconds(table, i, "start", text) for i, text in enumerate(starts)], dtype=np.float64)
    end = np.array([_parse_seconds(table, i, "end", text) for i, text in enumerate(ends)], dtype=np.float64)
    negative = np.flatnonzero(start < 0)
    if negative.size:
        i = int(negative[0])
        raise table.error(i, "start", f"start ({start[i]}) must be >= 0 seconds")
    inverted = np.flatnonzero(end <= start)
    if inverted.size:
        i = int(inverted[0])
        raise table.error(i, "end", f"end ({end[i]}) must be greater than start ({start[i]})")
    return start, end


def _ophnet_splits(table: _CsvTable, splits: list[str]) -> pd.Series:
    for index, split in enumerate(splits):
        if split not in OPHNET_SPLITS:
            raise table.error(index, "split", f"expected one of {list(OPHNET_SPLITS)}, found {split!r}")
    return pd.Series(splits, dtype=_SPLIT_DTYPE)


def _ophnet_labels(table: _CsvTable, column: str, cells: list[str]) -> np.ndarray:
    """Non-negative integer class ids (int64)."""
    for index, text in enumerate(cells):
        if not (text.isascii() and text.isdigit()):
            raise table.error(index, column, f"expected a non-negative integer class id, found {text!r}")
    return np.array([int(text) for text in cells], dtype=np.int64)


def _check_one_split_per_video(table: _CsvTable, frame: pd.DataFrame) -> None:
    """A video in two splits would leak training clips into evaluation."""
    first = frame.drop_duplicates("video_id")[["video_id", "split"]]
    first_split = dict(zip(first["video_id"], first["split"]))
    first_row = dict(zip(first["video_id"], first.index))
    mismatched = np.flatnonzero(frame["split"].astype(str).to_numpy() != frame["video_id"].map(first_split)
                                .astype(str).to_numpy())
    if mismatched.size:
        i = int(mismatched[0])
        video_id = frame["video_id"].iat[i]
        raise table.error(i, "split", f"video {video_id!r} is in split {frame['split'].iat[i]!r} here but in "
                                      f"{first_split[video_id]!r} at {table.where(first_row[video_id])}; "
                                      "a video must belong to one split")


def _check_segment_paths(table: _CsvTable, paths: list[str], root: Path | None, check_files: bool) -> None:
    for index, relative in enumerate(paths):
        problem = _escape_problem(relative)
        if problem:
            raise table.error(index, "segment_path", f"segment path {problem}")
        if check_files and root is not None:
            full = _absolute(root / relative)
            if not full.is_file():
                raise table.error(index, "segment_path", f"segment file not found: expected {full}")


def write_ophnet_csv(path: PathLike, df: pd.DataFrame) -> Path:
    """Validate ``df`` like :func:`read_ophnet_csv` and write it atomically (UTF-8, no byte-order mark).

    Columns are written in the canonical order (required, then operation_id/segment_path, then extras).
    Seconds are written with ``repr``, so they read back bit-identical.
    """
    path = _absolute(path)
    missing = [name for name in OPHNET_REQUIRED if name not in df.columns]
    if missing:
        raise ManifestError(path, f"cannot write: missing required column(s) {missing}; found columns "
                                  f"{list(df.columns)}")
    order = [n for n in OPHNET_REQUIRED + OPHNET_OPTIONAL if n in df.columns]
    order += [n for n in df.columns if n not in order]
    cells = [[_cell_text(value) for value in column] for column in (df[name].tolist() for name in order)]
    rows = [list(row) for row in zip(*cells)] if cells and cells[0] else []
    table = _CsvTable(path, [str(name) for name in order], rows, [None] * len(rows))
    frame = _ophnet_frame(table)
    if "segment_path" in frame.columns:
        _check_segment_paths(table, frame["segment_path"].tolist(), None, False)
    return _write_csv(path, table.header, rows)


def _cell_text(value: Any) -> str:
    """Text of one DataFrame cell for writing: floats via repr, missing values as ''."""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if value is None or value is pd.NA:
        return ""
    return str(value)


def split_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Number of distinct videos and of clips (rows) per split, indexed train, val, test."""
    grouped = df.groupby(df["split"].astype(_SPLIT_DTYPE), observed=False)["video_id"]
    return pd.DataFrame({"videos": grouped.nunique(), "clips": grouped.size()}).astype(np.int64)


def class_counts(df: pd.DataFrame, column: str) -> pd.Series:
    """Clips per class id of ``column`` (e.g. ``phase_id``), indexed by class id in ascending order."""
    if column not in df.columns:
        raise KeyError(f"no column {column!r}; found columns {list(df.columns)}")
    return df[column].value_counts().sort_index().rename("clips")


# ---------------------------------------------------------------------------------------------------------
# 5. Generated-video folders
# ---------------------------------------------------------------------------------------------------------

MANIFEST_NAME = "manifest.jsonl"
_GENERATED_FIELDS = ("path", "prompt", "seed", "generator", "checkpoint_hash", "settings")


@dataclass(frozen=True)
class GeneratedVideo:
    """One generated video. ``path`` is absolute on read; on write it may also be relative to the folder.

    ``settings`` holds what changes the pixels (steps, guidance, size, fps ...); ``extra`` keeps any further
    JSON fields of the line.
    """

    path: Path
    prompt: str
    seed: int
    generator: str
    checkpoint_hash: str
    settings: dict[str, Any]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_generated(folder: PathLike, check_files: bool = True) -> list[GeneratedVideo]:
    """Read ``<folder>/manifest.jsonl``; with ``check_files`` every listed video must exist.

    A last line without a line end that does not parse is a write torn by a crash: it is skipped with a
    warning. Any other malformed line raises. Blank lines are skipped.
    """
    folder = _absolute(folder)
    manifest = folder / MANIFEST_NAME
    _require_file(manifest)
    parsed = _parse_manifest(manifest, folder)
    if parsed.torn_line is not None:
        warnings.warn(f"{manifest}: ignoring torn last line {parsed.torn_line} (no line end and not valid "
                      "JSON; probably a write interrupted by a crash)", stacklevel=2)
    if check_files:
        for row, (line, record) in enumerate(zip(parsed.lines, parsed.records), start=1):
            if not record.path.is_file():
                raise _manifest_error(manifest, row, line, "path", f"video not found: expected {record.path}")
    return parsed.records


@dataclass
class _ParsedManifest:
    records: list[GeneratedVideo]
    lines: list[int]  # line number of each record
    torn_line: int | None  # line number of a torn last line, if any
    torn_offset: int | None  # byte offset where that torn line starts
    next_line: int = 1  # line number the next appended record will have


def _manifest_error(manifest: Path, row: int, line: int, name: str | None, message: str) -> ManifestError:
    return ManifestError(manifest, message, row=row, line=line, field=name, field_kind="field")


def _parse_manifest(manifest: Path, folder: Path) -> _ParsedManifest:
    """Validated records of a manifest, their line numbers, and where a torn last line starts."""
    chunks = manifest.read_bytes().split(b"\n")
    parsed = _ParsedManifest([], [], None, None)
    first_line: dict[Path, int] = {}
    offset = 0
    for line, chunk in enumerate(chunks, start=1):
        if chunk.strip():
            row = len(parsed.records) + 1
            obj = _decode_line(manifest, row, line, chunk, torn_ok=line == len(chunks))
            if obj is None:
                parsed.torn_line, parsed.torn_offset = line, offset
                break
            record = _generated_from_json(manifest, folder, row, line, obj)
            _check_new_path(manifest, row, line, record.path, first_line)
            parsed.records.append(record)
            parsed.lines.append(line)
        offset += len(chunk) + 1
    # An unterminated but complete last line gets its line end before the next record.
    parsed.next_line = parsed.torn_line or (len(chunks) if chunks[-1] == b"" else len(chunks) + 1)
    return parsed


def _decode_line(manifest: Path, row: int, line: int, chunk: bytes, torn_ok: bool) -> dict | None:
    """The JSON object on one line; ``None`` for an unparsable last line without line end when ``torn_ok``."""
    try:
        obj = json.loads(chunk.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        if torn_ok:
            return None
        raise _manifest_error(manifest, row, line, None, f"malformed JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise _manifest_error(manifest, row, line, None, f"expected a JSON object, found {type(obj).__name__}")
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _generated_from_json(
    manifest: Path, folder: Path, row: int, line: int, obj: Mapping[str, Any]
) -> GeneratedVideo:
    def fail(name: str, message: str) -> ManifestError:
        return _manifest_error(manifest, row, line, name, message)

    missing = [name for name in _GENERATED_FIELDS if name not in obj]
    if missing:
        raise fail(missing[0], f"missing field(s) {missing}; found fields {sorted(obj)}")
    expected_types = {"path": str, "prompt": str, "generator": str, "checkpoint_hash": str, "settings": dict}
    for name, kind in expected_types.items():
        if not isinstance(obj[name], kind):
            raise fail(name, f"expected a JSON {'object' if kind is dict else 'string'}, found {obj[name]!r}")
    if not isinstance(obj["seed"], int) or isinstance(obj["seed"], bool):
        raise fail("seed", f"expected an integer seed, found {obj['seed']!r}")
    for name in ("generator", "checkpoint_hash"):
        if not obj[name].strip():
            raise fail(name, f"expected a non-empty {name}, found {obj[name]!r}")
    problem = _escape_problem(obj["path"])
    if problem:
        raise fail("path", f"path {problem}")
    extra = {key: value for key, value in obj.items() if key not in _GENERATED_FIELDS}
    return GeneratedVideo(_absolute(folder / obj["path"]), obj["prompt"], obj["seed"], obj["generator"],
                          obj["checkpoint_hash"], obj["settings"], extra)


def _check_new_path(manifest: Path, row: int, line: int, path: Path, first_line: dict[Path, int]) -> None:
    if path in first_line:
        raise _manifest_error(manifest, row, line, "path",
                              f"duplicate path {str(path)!r}; already listed on line {first_line[path]}")
    first_line[path] = line


def _generated_line(manifest: Path, folder: Path, row: int, line: int, record: GeneratedVideo) -> bytes:
    """One validated JSON line (with its line end) for ``record``, to be written as ``row`` on ``line``."""
    relative = _relative_to_root(folder, record.path)
    if relative is None:
        raise _manifest_error(manifest, row, line, "path", f"video {record.path} is not inside {folder}")
    clashes = sorted(set(record.extra) & set(_GENERATED_FIELDS))
    if clashes:
        raise _manifest_error(manifest, row, line, clashes[0], f"extra repeats core field(s) {clashes}")
    obj = {"path": relative, **{name: getattr(record, name) for name in _GENERATED_FIELDS[1:]}, **record.extra}
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _manifest_error(manifest, row, line, None, f"record is not JSON-serialisable ({exc})") from exc
    _generated_from_json(manifest, folder, row, line, json.loads(text))  # what we write must read back
    return (text + "\n").encode("utf-8")


def append_generated(folder: PathLike, record: GeneratedVideo, check_file: bool = True) -> Path:
    """Append ``record`` to ``<folder>/manifest.jsonl`` as one line, with a single write + flush + fsync.

    Write the video first, then call this (``check_file`` refuses a record whose video is missing), so every
    line names a complete video. Refuses a path already listed. A torn last line left by an earlier crash is
    cut off first, with a warning. Assumes one writer per folder at a time.
    """
    folder = _absolute(folder)
    manifest = folder / MANIFEST_NAME
    parsed = _parse_manifest(manifest, folder) if manifest.exists() else _ParsedManifest([], [], None, None)
    row = len(parsed.records) + 1
    line = parsed.next_line
    encoded = _generated_line(manifest, folder, row, line, record)
    path = _absolute(folder / record.path)
    _check_new_path(manifest, row, line, path, dict(zip((r.path for r in parsed.records), parsed.lines)))
    if check_file and not path.is_file():
        raise _manifest_error(manifest, row, line, "path",
                              f"video not found: expected {path} (write the video before its manifest line)")
    if parsed.torn_line is not None:
        warnings.warn(f"{manifest}: cutting off torn last line {parsed.torn_line} (no line end and not valid "
                      "JSON; probably a write interrupted by a crash) before appending", stacklevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    _append_bytes(manifest, encoded, parsed.torn_offset)
    return manifest


def _append_bytes(manifest: Path, encoded_line: bytes, truncate_at: int | None) -> None:
    """Append one line with a single ``write`` and ``fsync``, first cutting the file at ``truncate_at``."""
    descriptor = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if truncate_at is not None:
            os.ftruncate(descriptor, truncate_at)
        elif os.fstat(descriptor).st_size and not _ends_with_newline(manifest):
            encoded_line = b"\n" + encoded_line  # a complete last line that only lacked its line end
        os.write(descriptor, encoded_line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def write_generated(folder: PathLike, records: Iterable[GeneratedVideo]) -> Path:
    """Rewrite ``<folder>/manifest.jsonl`` atomically with ``records`` (paths must lie inside ``folder``)."""
    folder = _absolute(folder)
    manifest = folder / MANIFEST_NAME
    lines: list[bytes] = []
    first_line: dict[Path, int] = {}
    for number, record in enumerate(records, start=1):
        lines.append(_generated_line(manifest, folder, number, number, record))
        _check_new_path(manifest, number, number, _absolute(folder / record.path), first_line)
    with atomic_path(manifest) as tmp:
        tmp.write_bytes(b"".join(lines))
    return manifest
