"""Prompt files for generation: plain text, an Ophora-160K CSV, or Ophora's ``phase_prompts.csv``.

- ``*.csv`` with an ``instruction`` column (Ophora-160K: ``clip id,instruction``): one prompt per row;
- ``*.csv`` with a ``caption prompt`` column (``phase prompt,clip id,caption prompt``): the caption prompt;
- any other CSV: name the column with ``column=``;
- anything else: a UTF-8 text file, one prompt per non-blank line.

The other columns of a CSV row are kept as ``source`` (e.g. the phase a synthetic clip is labelled with).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Prompt", "PromptFileError", "read_prompts", "DEFAULT_COLUMNS"]

DEFAULT_COLUMNS = ("instruction", "caption prompt")


class PromptFileError(ValueError):
    """A prompt file that is missing, empty, or lacks the prompt column."""


@dataclass(frozen=True)
class Prompt:
    """Prompt number ``index`` (0-based, file order), its ``text`` and the other CSV cells of its row."""

    index: int
    text: str
    source: dict = field(default_factory=dict)


def read_prompts(path: str | os.PathLike, column: str | None = None) -> list[Prompt]:
    """Prompts of ``path`` (see the module docstring); raises :class:`PromptFileError` if there are none."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file not found: expected {path.resolve()}")
    prompts = _from_csv(path, column) if path.suffix.lower() == ".csv" or column else _from_text(path)
    if not prompts:
        raise PromptFileError(f"{path}: the prompt file holds no prompt (expected one prompt per line, or a CSV "
                              f"with an {' or '.join(repr(c) for c in DEFAULT_COLUMNS)} column and rows)")
    return prompts


def _from_text(path: Path) -> list[Prompt]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    return [Prompt(i, text) for i, text in enumerate(line for line in lines if line)]


def _from_csv(path: Path, column: str | None) -> list[Prompt]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        chosen = column or next((c for c in DEFAULT_COLUMNS if c in header), None)
        if chosen not in header:
            raise PromptFileError(f"{path}: no prompt column {column or DEFAULT_COLUMNS}; found columns {header}; "
                                  f"name one with --prompt-column")
        prompts = []
        for row in reader:
            text = (row.get(chosen) or "").strip()
            if not text:
                raise PromptFileError(f"{path}, line {reader.line_num}: empty {chosen!r}")
            prompts.append(Prompt(len(prompts), text, {k: v for k, v in row.items() if k != chosen}))
    return prompts
