"""KID: unbiased polynomial-kernel MMD^2 ((x.y / d + 1)^3) on the FID features (the same frames).

``kid``: mean and std over 100 subsets of min(1000, N_real, N_fake) rows (:mod:`benchmarks.metrics.mmd`); the
interval resamples videos (all frames of a drawn video together), each replicate averaging
``KID_BOOT_SUBSETS`` subsets of the resampled rows. KID has no detector or state of its own: it is computed on
the FID metric's states, which then keep their rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.metrics.base import Metric
from benchmarks.metrics.bootstrap import GroupedRows, interval
from benchmarks.metrics.fd import CI_METHOD, FrechetState
from benchmarks.metrics.mmd import kid, kid_per_subset, kid_subset_indices
from ophora.seeding import derive_seed

__all__ = ["KIDProtocol", "KID", "kid_with_interval"]

KID_BOOT_SUBSETS = 10  # subsets per KID bootstrap replicate


@dataclass(frozen=True)
class KIDProtocol:
    """KID on the FID features (the same frames as FID)."""

    name: str = "kid"
    version: str = "1"
    metric: str = "kid"
    features: str = "the FID protocol's pool3 features, one row per frame"
    kernel: str = "polynomial (gamma x.y + coef0)^degree"
    degree: int = 3
    gamma: str = "1/d"
    coef0: float = 1.0
    estimator: str = "unbiased MMD^2 (diagonals excluded)"
    subsets: int = 100
    subset_size: int = 1000
    subset_rule: str = "m = min(subset_size, N_real rows, N_fake rows), drawn without replacement; " \
                       "subset draws seeded by ophora.seeding.derive_seed(seed, 'kid')"
    spread: str = "population std (ddof 0) over subsets"


def kid_with_interval(protocol: KIDProtocol, real: GroupedRows, fake: GroupedRows, *, seed: int, n_boot: int = 0,
                      level: float = 0.95) -> dict[str, Any]:
    """KID (mean, std over ``protocol.subsets`` subsets) on per-row features and, with ``n_boot``, a shifted
    bootstrap interval over videos (each replicate: KID_BOOT_SUBSETS subsets of the resampled rows)."""
    x, y = real.xc + real.mean, fake.xc + fake.mean
    kw = dict(degree=protocol.degree, coef0=protocol.coef0)
    value, std = kid(x, y, subsets=protocol.subsets, subset_size=protocol.subset_size, seed=derive_seed(seed, "kid"),
                     **kw)
    result: dict[str, Any] = {"value": value, "std": std, "subset_size": min(protocol.subset_size, len(x), len(y))}
    if n_boot:
        rng = np.random.default_rng(derive_seed(seed, "kid-bootstrap"))
        replicates = np.empty(n_boot)
        for b in range(n_boot):
            rows_r = np.repeat(np.arange(len(x)), real.resample(rng).astype(np.int64))
            rows_f = np.repeat(np.arange(len(y)), fake.resample(rng).astype(np.int64))
            subsets = kid_subset_indices(len(rows_r), len(rows_f), KID_BOOT_SUBSETS, protocol.subset_size, rng)
            replicates[b] = kid_per_subset(x[rows_r], y[rows_f], subsets, **kw).mean()
        low, high = interval(value, replicates, level, CI_METHOD)
        result["ci"] = {"low": low, "high": high, "level": level, "method": CI_METHOD,
                        "resampled": "videos (both sets)", "subsets_per_replicate": KID_BOOT_SUBSETS,
                        "n_boot": n_boot, "seed": seed}
    return result


class KID(Metric):
    """Kernel Inception Distance on the FID features (lower is better)."""

    name = "kid"
    display_name = "KID"
    higher_is_better = False
    protocols = (KIDProtocol(),)
    result_fields = ("value", "std", "subset_size", "ci", "n_real", "n_fake", "n_real_rows", "n_fake_rows", "error")
    features_from = "fid"

    def needs_rows(self, n_boot: int) -> bool:
        return True

    def compute(self, real: FrechetState, fake: FrechetState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """KID, std over subsets, N and (with ``n_boot``) the interval over videos, from the FID states' rows."""
        base = {"n_real": real.videos, "n_fake": fake.videos, "n_real_rows": real.stats.count,
                "n_fake_rows": fake.stats.count}
        if real.stats.count < 2 or fake.stats.count < 2:
            return {"value": None, **base, "error": "needs at least 2 rows in each set"}
        n_boot = n_boot if real.videos >= 2 and fake.videos >= 2 else 0
        return {**kid_with_interval(self.protocol, real.grouped(), fake.grouped(), seed=seed, n_boot=n_boot), **base}
