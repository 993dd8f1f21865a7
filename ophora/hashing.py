"""Streamed file hashing: one loop for weights checksums, cache keys and checkpoint hashes."""
from __future__ import annotations

import hashlib
import os

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
