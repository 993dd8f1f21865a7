"""Generated-video folders: ``<folder>/manifest.jsonl``, one JSON object per video.

Each line holds ``path`` (relative to the folder), ``prompt``, ``seed``, ``generator``, ``checkpoint_hash`` and
``settings``, plus any extra fields. An append writes every byte of its line (looping over short writes) and
fsyncs; if it fails (a full disk) it cuts the file back to its previous length, so the manifest holds exactly
the earlier records. Only a crash mid-append can leave a torn last line; readers skip it with a warning naming
the file and the line (the video it described is then unlisted: append it again).
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ophora.data.atomic import atomic_path
from ophora.data.manifests._common import (
    ManifestError,
    PathLike,
    _absolute,
    _escape_problem,
    _relative_to_root,
    _require_file,
)

__all__ = ["MANIFEST_NAME", "GeneratedVideo", "read_generated", "append_generated", "write_generated"]

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
    warning naming the file and the line. Any other malformed line raises. Blank lines are skipped.
    """
    folder = _absolute(folder)
    manifest = folder / MANIFEST_NAME
    _require_file(manifest)
    parsed = _parse_manifest(manifest, folder)
    if parsed.torn_line is not None:
        warnings.warn(f"{manifest}: ignoring torn last line {parsed.torn_line} (no line end and not valid JSON; "
                      f"probably a write interrupted by a crash); {len(parsed.records)} record(s) read, the video "
                      "of that line is not listed", stacklevel=2)
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
    except RecursionError:  # json's parser recurses once per nesting level
        raise _manifest_error(manifest, row, line, None, "JSON nested too deeply to be a record") from None
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
    """Append ``record`` to ``<folder>/manifest.jsonl`` as one line: every byte written, then fsync.

    Write the video first, then call this (``check_file`` refuses a record whose video is missing), so every
    line names a complete video. Refuses a path already listed. A torn last line left by an earlier crash is
    cut off first, with a warning. If the write fails (``OSError``, e.g. a full disk) the file is cut back to
    its previous length and the error raised: the manifest then holds exactly the earlier records. Assumes one
    writer per folder at a time.
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
                      "JSON; probably a write interrupted by a crash) before appending; the video of that line is "
                      "not listed", stacklevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    _append_bytes(manifest, encoded, parsed.torn_offset)
    return manifest


def _append_bytes(manifest: Path, encoded_line: bytes, truncate_at: int | None) -> None:
    """Append one line and ``fsync``, first cutting the file at ``truncate_at``; on failure cut the file back to
    its length before the append and raise."""
    descriptor = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if truncate_at is not None:
            os.ftruncate(descriptor, truncate_at)
        elif os.fstat(descriptor).st_size and not _ends_with_newline(manifest):
            encoded_line = b"\n" + encoded_line  # a complete last line that only lacked its line end
        length = os.fstat(descriptor).st_size
        try:
            _write_all(descriptor, encoded_line)
            os.fsync(descriptor)
        except BaseException as err:
            _cut_back(descriptor, length, manifest, err)
            raise
    finally:
        os.close(descriptor)


def _write_all(descriptor: int, data: bytes) -> None:
    """``os.write`` until every byte is written: a write may be short or interrupted (EINTR)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(descriptor, view)
        except InterruptedError:
            continue
        if written <= 0:
            raise OSError(errno.EIO, f"os.write wrote {written} bytes of {len(view)}")
        view = view[written:]


def _cut_back(descriptor: int, length: int, manifest: Path, err: BaseException) -> None:
    """Remove a partly written line after a failed append, so that no torn line is left behind."""
    try:
        os.ftruncate(descriptor, length)
    except OSError as cut_err:
        warnings.warn(f"{manifest}: could not cut a failed append ({err!r}) back to {length} bytes ({cut_err}); "
                      "a torn last line may remain, which readers skip with a warning", stacklevel=3)
        return
    with contextlib.suppress(OSError):  # the cut is made; a failing fsync (the fault itself) cannot undo it
        os.fsync(descriptor)


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
