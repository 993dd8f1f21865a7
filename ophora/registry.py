"""String-keyed lookups with "did you mean" errors, shared by every registry and config validator."""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str], n: int = 1, cutoff: float = 0.6) -> str:
    """``"did you mean 'x'?"`` for the closest of ``known`` to ``name`` (up to ``n``), or ``""`` if none is close."""
    close = difflib.get_close_matches(str(name), sorted(known), n=n, cutoff=cutoff)
    return f"did you mean {', '.join(map(repr, close))}?" if close else ""


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``; an unknown name raises KeyError naming ``what``, close matches and every known key."""
    try:
        return table[name]
    except KeyError:
        hint = did_you_mean(name, table, n=3, cutoff=0.4)
        hint = f" {hint[0].upper()}{hint[1:]}" if hint else ""
        raise KeyError(f"unknown {what} {name!r}.{hint} Registered: {', '.join(sorted(table))}") from None
