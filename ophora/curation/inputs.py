"""Reading the raw narrated set (``clip_id,caption,source_video,start,end,path``) for curation.

Clip files are not required to exist: a missing or unreadable clip is a verdict, not a reason to stop. A
manifest with bytes that are not UTF-8 is read with those bytes replaced by U+FFFD (in a sanitised copy
under the run folder), so only the affected captions fail, each with a reason.
"""
from __future__ import annotations

import os
from pathlib import Path

from ophora.curation.stage import ClipItem
from ophora.data import manifests
from ophora.data.atomic import atomic_write_text

__all__ = ["load_items"]


def load_items(csv_path: str | os.PathLike, workdir: str | os.PathLike) -> tuple[list[ClipItem], list[str]]:
    """The clips of a raw set and notes about how it was read (e.g. undecodable bytes replaced)."""
    csv_path = Path(csv_path).absolute()
    try:
        clips = manifests.read_raw_set(csv_path, check_files=False, allow_empty_captions=True)
        notes = []
    except manifests.ManifestError as err:
        if not isinstance(err.__cause__, UnicodeDecodeError):
            raise
        sanitised = Path(workdir) / ".work" / "input_utf8_replaced.csv"
        atomic_write_text(sanitised, csv_path.read_bytes().decode("utf-8", errors="replace"))
        clips = manifests.read_raw_set(sanitised, root=csv_path.parent, check_files=False, allow_empty_captions=True)
        notes = [f"{csv_path} is not valid UTF-8 ({err.reason}); undecodable bytes were replaced and the "
                 f"captions holding them are dropped by the rewrite stage"]
    items = [ClipItem(c.clip_id, c.caption, c.path, c.source_video, c.start, c.end) for c in clips]
    return items, notes
