"""What every manifest format shares: :class:`ManifestError`, path checks and CSV table handling.

Every problem raises :class:`ManifestError` naming the file, the 1-based data row, the line of the file where
that row starts, and the column or field. The first problem raises; nothing is dropped silently.

CSV files are parsed with the standard ``csv`` module rather than ``pandas.read_csv``: pandas silently pads
rows with too few fields (with ``keep_default_na=False``), turns the first column into the index when every row
has one field too many, and cannot say on which line a record with an embedded newline starts. Values are kept
as text until validated, so ids such as ``case_0002`` and captions such as ``NA`` are never mangled. CSV files
are written with ``pandas.DataFrame.to_csv`` and ``\\r\\n`` line ends (RFC 4180), which quotes every field
holding a comma, quote, ``\\r`` or ``\\n``, so captions round-trip exactly.

Reading is linear in the file's size, and error messages stay short whatever the file holds: a message lists at
most :data:`MAX_LISTED` names (then how many more) and quotes at most :data:`MAX_QUOTED` characters of a value.

Paths inside manifests are relative to the dataset root; readers return absolute :class:`pathlib.Path`s.
Escape checks are lexical (``..`` is normalised away, symlinks are not followed), so a dataset whose
``clips/`` is a symlink to other storage still reads, while ``../x.mp4`` or ``/etc/x`` are rejected.
"""
from __future__ import annotations

import csv
import io
import math
import os
import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import pandas as pd

from ophora.data.atomic import atomic_path

PathLike = str | os.PathLike

MAX_LISTED = 8  # names a message lists before saying how many more there are
MAX_QUOTED = 120  # characters of one value a message quotes
MAX_REASON = 1500  # characters of a reason; longer ones keep their head and tail


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
        self.reason = message = _bounded(message)
        self.field_kind = field_kind
        location = _format_location(self.path, row, line, _bounded(field, MAX_QUOTED) if field else field, field_kind)
        super().__init__(location + ": " + message)

    def __reduce__(self):  # keep the attributes when sent between processes (multiprocessing pools)
        return _rebuild_manifest_error, (self.path, self.reason, self.row, self.line, self.field, self.field_kind)


def _rebuild_manifest_error(path, reason, row, line, field, field_kind) -> ManifestError:
    return ManifestError(path, reason, row=row, line=line, field=field, field_kind=field_kind)


def _bounded(text: str, limit: int = MAX_REASON) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and tail (the tail often says what to do)."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]} ... [{len(text) - 2 * keep:,} characters left out] ... {text[-keep:]}"


def quoted(value: Any) -> str:
    """``repr(value)``, cut to :data:`MAX_QUOTED` characters, for error messages."""
    text = repr(value)
    if len(text) <= MAX_QUOTED:
        return text
    return f"{text[:MAX_QUOTED - 30]}... ({len(text):,} characters)"


def listed(names: Sequence[Any], limit: int = MAX_LISTED) -> str:
    """Up to ``limit`` quoted names, then how many more: ``['a', 'b', ... and 3 more]``."""
    shown = ", ".join(quoted(name) for name in names[:limit])
    more = len(names) - limit
    return f"[{shown}, ... and {more:,} more]" if more > 0 else f"[{shown}]"


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
        return f"{quoted(relative)} is absolute; expected a path relative to the dataset root"
    normal = posixpath.normpath(relative)
    if normal == ".." or normal.startswith("../"):
        return f"{quoted(relative)} leaves the dataset root"
    if normal == ".":
        return f"{quoted(relative)} names the dataset root itself, not a file"
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
class CsvTable:
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


def read_csv_table(
    path: PathLike,
    required: Sequence[str],
    hints: Mapping[str, str] | None = None,
) -> CsvTable:
    """Parse a UTF-8 CSV (byte-order mark allowed); check its header and that every row has all fields.

    ``hints`` maps a required column to a common misspelling, which the error then points out. Time and memory
    are linear in the file's size.
    """
    path = _absolute(path)
    _require_file(path)
    header, rows, lines = _parse_csv(path, _decode_utf8(path, path.read_bytes()))
    table = CsvTable(path, header, rows, lines)
    _check_header(table, required, hints or {})
    _check_field_counts(table)
    return table


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _decode_utf8(path: Path, data: bytes) -> str:
    """UTF-8 text of ``data`` (a leading byte-order mark dropped), or a ManifestError naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        body = exc.object  # the bytes after any byte-order mark; exc.start counts from there
        line = len(_LINE_END.findall(body, 0, exc.start)) + 1
        raise ManifestError(path, f"expected UTF-8 text, found undecodable bytes ({exc.reason}) at byte "
                                  f"{exc.start + len(data) - len(body)}", line=line) from None


def _parse_csv(path: Path, text: str) -> tuple[list[str], list[list[str]], list[int | None]]:
    """Header, data rows and the start line of each data row; blank lines are skipped."""
    records: list[list[str]] = []
    lines: list[int | None] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    previous_end = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ManifestError(path, f"malformed CSV ({exc})", line=reader.line_num) from None
        if record:
            records.append(record)
            lines.append(previous_end + 1)
        previous_end = reader.line_num
    if not records:
        raise ManifestError(path, "file is empty; expected a header line", line=1)
    return records[0], records[1:], lines[1:]


def _check_header(table: CsvTable, required: Sequence[str], hints: Mapping[str, str]) -> None:
    header = table.header
    found = f"found columns {listed(header)}"
    duplicates = sorted(name for name, count in Counter(header).items() if count > 1)
    if duplicates:
        raise ManifestError(table.path, f"header repeats column(s) {listed(duplicates)}; {found}", line=1)
    present = set(header)
    missing = [name for name in required if name not in present]
    if not missing:
        return
    message = f"missing required column(s) {listed(missing)}; {found}; expected {list(required)}"
    for name in missing:
        if hints.get(name) in present:
            message += f" (column {hints[name]!r} should be spelled {name!r})"
    raise ManifestError(table.path, message, line=1)


def _check_field_counts(table: CsvTable) -> None:
    expected = len(table.header)
    for index, row in enumerate(table.rows):
        if len(row) != expected:
            raise table.error(index, None, f"expected {expected} fields (columns {listed(table.header)}), "
                                           f"found {len(row)}: {listed(row)}")


def _check_unique(table: CsvTable, column: str, what: str) -> None:
    first_seen: dict[str, int] = {}
    for index, value in enumerate(table.column(column)):
        if value in first_seen:
            raise table.error(index, column, f"duplicate {what} {quoted(value)}; already used by "
                                             f"{table.where(first_seen[value])}")
        first_seen[value] = index


def _parse_seconds(table: CsvTable, index: int, column: str, text: str) -> float:
    """A finite float (seconds) from a cell, or a ManifestError naming the cell."""
    try:
        value = float(text)
    except ValueError:
        raise table.error(index, column, f"expected a number of seconds, found {quoted(text)}") from None
    if not math.isfinite(value):
        raise table.error(index, column, f"expected a finite number of seconds, found {quoted(text)}")
    return value


def _write_csv(path: PathLike, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """Write text cells atomically as UTF-8 CSV (no byte-order mark, ``\\r\\n`` line ends, minimal quoting)."""
    frame = pd.DataFrame(list(rows), columns=list(columns), dtype=object)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\r\n")
    return Path(path)
