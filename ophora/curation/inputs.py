"""Reading the raw narrated set (``clip_id,caption,source_video,start,end,path``) for curation.

Clip files are not required to exist: a missing or unreadable clip is a verdict, not a reason to stop. A
manifest with bytes that are not UTF-8 is read with those bytes replaced by U+FFFD (in a sanitised copy
under the run folder), so only the affected captions fail, each with a reason.

Clip ids name files in the output sets, so they are normalised (surrounding whitespace removed: `` a1`` is
``a1``) and refused, naming the row, when two rows then share one or when an id holds a path separator or a
control character. Each clip gets a :func:`fingerprint` of its row and its file's size and modification time,
which is how a resumed run tells a changed clip from one it has already curated.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ophora.curation.stage import ClipItem
from ophora.data import manifests
from ophora.data.atomic import atomic_write_text

__all__ = ["load_items", "fingerprint"]

_BAD_ID = re.compile(r"[/\\\x00-\x1f\x7f]")


def load_items(csv_path: str | os.PathLike, workdir: str | os.PathLike) -> tuple[list[ClipItem], list[str]]:
    """The clips of a raw set and notes about how it was read (e.g. undecodable bytes replaced)."""
    csv_path = Path(csv_path).absolute()
    try:
        clips = manifests.read_raw_set(csv_path, check_files=False, allow_empty_captions=True)
        notes = []
    except manifests.ManifestError as err:
        data = csv_path.read_bytes()
        if _is_utf8(data):  # the problem is not the encoding
            raise
        sanitised = Path(workdir) / ".work" / "input_utf8_replaced.csv"
        atomic_write_text(sanitised, data.decode("utf-8", errors="replace"))
        clips = manifests.read_raw_set(sanitised, root=csv_path.parent, check_files=False, allow_empty_captions=True)
        notes = [f"{csv_path} is not valid UTF-8 ({err.reason}); undecodable bytes were replaced and the "
                 f"captions holding them are dropped by the rewrite stage"]
    items = [ClipItem(clip_id, c.caption, c.path, c.source_video, c.start, c.end)
             for clip_id, c in zip(_clip_ids(csv_path, clips), clips)]
    for item in items:
        item.fingerprint = fingerprint(item)
    return items, notes


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _clip_ids(csv_path: Path, clips: list) -> list[str]:
    """The clips' ids without surrounding whitespace; ManifestError naming the row for an id that is not a
    safe file name or that another row already has."""
    ids, rows = [], {}
    for row, clip in enumerate(clips, start=1):
        clip_id = clip.clip_id.strip()
        if _BAD_ID.search(clip_id) or clip_id in (".", ".."):
            raise manifests.ManifestError(csv_path, f"clip id {clip.clip_id!r} cannot name a file (it holds a path "
                                          "separator or a control character)", row=row, field="clip_id")
        if clip_id in rows:
            raise manifests.ManifestError(
                csv_path, f"clip id {clip.clip_id!r} is {clip_id!r} without surrounding whitespace, which row "
                          f"{rows[clip_id]} already uses; give each clip its own id", row=row, field="clip_id")
        rows[clip_id] = row
        ids.append(clip_id)
    return ids


def fingerprint(item: ClipItem) -> str:
    """SHA-256 hex of the clip's row (id, caption, source video, start, end, path) and its file's size and
    modification time (ns): changes when the row or the file does, without reading the video."""
    try:
        stat = item.path.stat()
        file_state = [stat.st_size, stat.st_mtime_ns]
    except OSError as err:
        file_state = [type(err).__name__]
    row = [item.clip_id, item.caption, item.source_video, item.start, item.end, str(item.path), *file_state]
    return hashlib.sha256(json.dumps(row, ensure_ascii=True).encode()).hexdigest()
