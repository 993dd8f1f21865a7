"""One place for randomness: derived seeds and seeded generators.

Seeds for sub-tasks (a simulated patient, a generated video, a real clip's random offset) are derived from
a root seed and a tuple of integers or strings with a stable hash, so they do not depend on the order in
which work is scheduled, on the number of workers, or on Python's per-process hash randomisation.
"""
from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(root: int, *keys: int | str) -> int:
    """Return a 63-bit seed that depends only on ``root`` and ``keys`` (stable across runs and machines)."""
    text = "/".join([str(int(root))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def rng(root: int, *keys: int | str) -> np.random.Generator:
    """A numpy Generator seeded by :func:`derive_seed` (``root``, ``keys``)."""
    return np.random.default_rng(derive_seed(root, *keys))
