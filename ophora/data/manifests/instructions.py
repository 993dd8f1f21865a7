"""Ophora-160K instruction set: ``<root>/<name>.csv`` with header ``clip id,instruction``.

Clips live at ``<root>/clips/<clip id>.mp4`` (Hugging Face General-Medical-AI/Ophora-160K).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ophora.data.manifests._common import (
    CsvTable,
    ManifestError,
    PathLike,
    _absolute,
    _check_unique,
    _write_csv,
    quoted,
    read_csv_table,
)

__all__ = ["INSTRUCTION_COLUMNS", "InstructionClip", "read_instruction_set", "write_instruction_set"]

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
    if clip_id != clip_id.strip():
        return (f"clip id {quoted(clip_id)} has white space around it (it would name another file than "
                f"{quoted(clip_id.strip())}); remove it")
    if clip_id in (".", "..") or any(sep in clip_id for sep in ("/", "\\", "\0")):
        return f"clip id {quoted(clip_id)} would leave {_CLIPS_FOLDER}/; expected a bare name such as 'X3jTUYMflCk_26'"
    return None


def _clip_path(root: Path, clip_id: str) -> Path:
    return root / _CLIPS_FOLDER / f"{clip_id}{_CLIP_SUFFIX}"


def read_instruction_set(
    csv_path: PathLike, root: PathLike | None = None, check_files: bool = True
) -> list[InstructionClip]:
    """Read an Ophora-160K CSV (header ``clip id,instruction``); clips live at ``<root>/clips/<id>.mp4``.

    ``root`` defaults to the CSV's folder. With ``check_files`` every clip must exist.
    """
    table = read_csv_table(csv_path, INSTRUCTION_COLUMNS, hints={"clip id": "clip_id"})
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
    table: CsvTable, index: int, root: Path, clip_id: str, instruction: str, existing: set[str] | None
) -> InstructionClip:
    problem = _clip_id_problem(clip_id)
    if problem:
        raise table.error(index, "clip id", problem)
    if not instruction.strip():
        raise table.error(index, "instruction", f"expected a non-empty instruction, found {quoted(instruction)}")
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
        raise ManifestError(csv_path, f"duplicate clip id {quoted(clip.clip_id)}; already used by row "
                                      f"{first_seen[clip.clip_id]}", row=row, field="clip id")
    first_seen[clip.clip_id] = row
    if not clip.instruction.strip():
        raise ManifestError(csv_path, f"expected a non-empty instruction, found {quoted(clip.instruction)}",
                            row=row, field="instruction")
    expected = _clip_path(root, clip.clip_id)
    if _absolute(root / clip.path) != expected:
        raise ManifestError(csv_path, f"clip path must be {expected} (the layout fixes it from the clip id), "
                                      f"found {clip.path}", row=row, field="clip id")
