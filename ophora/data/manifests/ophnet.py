"""OphNet2024 labelled clips: CSV ``video_id,start,end,split,surgery_id,phase_id[,operation_id][,segment_path]``.

Read into a typed ``pandas.DataFrame``, one row per clip; :func:`split_counts` and :func:`class_counts`
summarise such a frame. The real OphNet2024 annotation CSVs ship with the package (MIT, see
``ophora/data/ophnet2024/README.md``): :func:`bundled_ophnet_csv` names one, :data:`OPHNET2024_DIR` is their folder.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ophora.data.bundled import package_file
from ophora.data.manifests._common import (
    CsvTable,
    ManifestError,
    PathLike,
    _absolute,
    _escape_problem,
    _parse_seconds,
    _write_csv,
    quoted,
    read_csv_table,
)

__all__ = [
    "OPHNET_REQUIRED",
    "OPHNET_OPTIONAL",
    "OPHNET_LABELS",
    "OPHNET_SPLITS",
    "OPHNET2024_DIR",
    "OPHNET2024_FILES",
    "bundled_ophnet_csv",
    "read_ophnet_csv",
    "write_ophnet_csv",
    "split_counts",
    "class_counts",
]

OPHNET_REQUIRED = ("video_id", "start", "end", "split", "surgery_id", "phase_id")
OPHNET_OPTIONAL = ("operation_id", "segment_path")
OPHNET_LABELS = ("surgery_id", "phase_id", "operation_id")
OPHNET_SPLITS = ("train", "val", "test")
MAX_CLASS_ID = 2**31 - 1  # the largest 32-bit integer; a larger class id is a typo or a different column
_SPLIT_DTYPE = pd.CategoricalDtype(list(OPHNET_SPLITS))

OPHNET2024_FILES = ("OphNet2024_loca_challenge.csv", "OphNet2024_loca_challenge_phase.csv",
                    "OphNet2024_loca_all.csv", "OphNet2024_surgery.csv")


def bundled_ophnet_csv(name: str) -> Path:
    """The shipped copy of an OphNet2024 annotation CSV (one of :data:`OPHNET2024_FILES`), read through
    :mod:`importlib.resources` so that it is found in an installed wheel as well as in a checkout."""
    if name not in OPHNET2024_FILES:
        raise KeyError(f"no shipped OphNet2024 file {name!r}; shipped: {list(OPHNET2024_FILES)}")
    return package_file(f"ophora/data/ophnet2024/{name}")


OPHNET2024_DIR = package_file("ophora/data/ophnet2024/LICENSE", must_exist=False).parent


def read_ophnet_csv(
    path: PathLike, videos_root: PathLike | None = None, check_files: bool = False
) -> pd.DataFrame:
    """Read an OphNet2024 CSV into a typed DataFrame, one row per clip.

    Columns: ``video_id`` (str), ``start``/``end`` (float64 seconds in the source video), ``split``
    (categorical train/val/test), ``surgery_id``/``phase_id``/``operation_id`` (int64 in [0, 2**31 - 1],
    operation_id only if present), ``segment_path`` (str relative to ``videos_root``, only if present), then
    any extra columns as str. A row that repeats an earlier one exactly is refused. With ``check_files``
    (which needs ``videos_root``) every segment file must exist; a CSV without ``segment_path`` lists no
    files, so there is nothing to check.
    """
    if check_files and videos_root is None:
        raise ValueError("check_files=True needs videos_root, the folder segment_path is relative to")
    table = read_csv_table(path, OPHNET_REQUIRED)
    frame = _ophnet_frame(table)
    if "segment_path" in frame.columns:
        root = _absolute(videos_root) if videos_root is not None else None
        _check_segment_paths(table, frame["segment_path"].tolist(), root, check_files)
    return frame


def _ophnet_frame(table: CsvTable) -> pd.DataFrame:
    """Typed, validated DataFrame from the text cells of an OphNet CSV."""
    present = [name for name in OPHNET_REQUIRED + OPHNET_OPTIONAL if name in table.header]
    extras = [name for name in table.header if name not in present]
    text = {name: table.column(name) for name in present + extras}
    _check_video_ids(table, text["video_id"])
    _check_no_repeated_rows(table)
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


def _check_video_ids(table: CsvTable, video_ids: list[str]) -> None:
    for index, video_id in enumerate(video_ids):
        if not video_id.strip():
            raise table.error(index, "video_id", f"expected a video id such as 'case_0002', found {quoted(video_id)}")


def _check_no_repeated_rows(table: CsvTable) -> None:
    """A row listed twice would count its clip twice in training and in every metric."""
    first_seen: dict[tuple[str, ...], int] = {}
    for index, row in enumerate(table.rows):
        first = first_seen.setdefault(tuple(row), index)
        if first != index:
            raise table.error(index, None, f"repeats {table.where(first)} exactly; list each clip once")


def _ophnet_times(table: CsvTable, starts: list[str], ends: list[str]) -> tuple[np.ndarray, np.ndarray]:
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


def _ophnet_splits(table: CsvTable, splits: list[str]) -> pd.Series:
    for index, split in enumerate(splits):
        if split not in OPHNET_SPLITS:
            raise table.error(index, "split", f"expected one of {list(OPHNET_SPLITS)}, found {quoted(split)}")
    return pd.Series(splits, dtype=_SPLIT_DTYPE)


def _ophnet_labels(table: CsvTable, column: str, cells: list[str]) -> np.ndarray:
    """Integer class ids in [0, :data:`MAX_CLASS_ID`] (int64)."""
    for index, text in enumerate(cells):
        if not (text.isascii() and text.isdigit()):
            raise table.error(index, column, f"expected a non-negative integer class id, found {quoted(text)}")
        if len(text.lstrip("0")) > len(str(MAX_CLASS_ID)) or int(text) > MAX_CLASS_ID:
            raise table.error(index, column, f"class id {quoted(text)} is larger than {MAX_CLASS_ID:,} (the largest "
                                             "32-bit integer); OphNet2024's largest is 231")
    return np.array([int(text) for text in cells], dtype=np.int64)


def _check_one_split_per_video(table: CsvTable, frame: pd.DataFrame) -> None:
    """A video in two splits would leak training clips into evaluation."""
    first = frame.drop_duplicates("video_id")[["video_id", "split"]]
    first_split = dict(zip(first["video_id"], first["split"]))
    first_row = dict(zip(first["video_id"], first.index))
    mismatched = np.flatnonzero(frame["split"].astype(str).to_numpy() != frame["video_id"].map(first_split)
                                .astype(str).to_numpy())
    if mismatched.size:
        i = int(mismatched[0])
        video_id = frame["video_id"].iat[i]
        raise table.error(i, "split", f"video {quoted(video_id)} is in split {frame['split'].iat[i]!r} here but in "
                                      f"{first_split[video_id]!r} at {table.where(first_row[video_id])}; "
                                      "a video must belong to one split")


def _check_segment_paths(table: CsvTable, paths: list[str], root: Path | None, check_files: bool) -> None:
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
    table = CsvTable(path, [str(name) for name in order], rows, [None] * len(rows))
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
