"""Prompt files for generation: plain text, an Ophora-160K CSV, or Ophora's ``phase_prompts.csv``.

- ``*.csv`` with an ``instruction`` column (Ophora-160K: ``clip id,instruction``): one prompt per row;
- ``*.csv`` with a ``caption prompt`` column (``phase prompt,clip id,caption prompt``): the caption prompt;
- any other CSV: name the column with ``column=``;
- anything else: a UTF-8 text file, one prompt per non-blank line.

The other columns of a CSV row are kept as ``source`` (e.g. the phase a synthetic clip is labelled with).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ophora.data.manifests import ManifestError, read_csv_table
from ophora.data.manifests._common import listed

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
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise PromptFileError(f"{path}, line {line}: not UTF-8 (byte {error.start}); save the file as UTF-8") from None
    lines = [line.strip() for line in text.splitlines()]
    return [Prompt(i, text) for i, text in enumerate(line for line in lines if line)]


def _from_csv(path: Path, column: str | None) -> list[Prompt]:
    """Rows of a CSV read by the manifests' reader (linear in the file's size, errors with file and line)."""
    try:
        table = read_csv_table(path, required=())
    except ManifestError as error:
        raise PromptFileError(str(error)) from None
    chosen = column or next((c for c in DEFAULT_COLUMNS if c in table.header), None)
    if chosen not in table.header:
        raise PromptFileError(f"{path}: no prompt column {column or DEFAULT_COLUMNS}; found columns "
                              f"{listed(table.header)}; name one with --prompt-column")
    position = table.header.index(chosen)
    prompts = []
    for index, row in enumerate(table.rows):
        text = row[position].strip()
        if not text:
            raise PromptFileError(f"{path}, {table.where(index)}: empty {chosen!r}")
        prompts.append(Prompt(len(prompts), text, {k: v for k, v in zip(table.header, row) if k != chosen}))
    return prompts
