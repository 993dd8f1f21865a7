"""Hashing: streamed file hashes (weights checksums, checkpoint hashes) and the one cache-key function.

:func:`cache_key` is how every stage cache, run folder and fingerprint of settings is keyed: Table 1's and
Table 2's stage folders, preset fingerprints, curation config digests.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ophora.results import plain

KEY_DIGITS = 16  # hex digits of a cache key (64 bits)

CHUNK = 1 << 22  # bytes read at a time (4 MiB)


def update_from_file(digest, path: str | os.PathLike) -> None:
    """Feed the bytes of ``path`` into a hashlib ``digest``, a chunk at a time."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    update_from_file(digest, path)
    return digest.hexdigest()


def cache_key(payload: Any) -> str:
    """:data:`KEY_DIGITS` hex digits of the sha256 of ``payload`` as canonical JSON (sorted keys; dataclasses,
    tuples and paths as plain values; anything else JSON cannot write as its ``str``). Equal settings give
    equal keys in every process and on every machine."""
    text = json.dumps(plain(payload), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_DIGITS]
