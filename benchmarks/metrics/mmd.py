"""KID's estimator: unbiased MMD^2 with a polynomial kernel, averaged over random subsets (the maths of
:class:`benchmarks.metrics.kid.KID`).

    k(x, y) = (gamma x.y + coef0)^degree,   gamma = 1/d by default, degree 3, coef0 1
    MMD^2_u(X, Y) = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
                    - 2 sum_{i,j} k(x_i, y_j) / m^2        (m samples in each subset)

As in StyleGAN-V / clean-fid / torchmetrics: ``subsets`` draws of m = min(subset_size, N_real, N_fake)
real and m fake features, each drawn without replacement; the result is the mean and the population
standard deviation (ddof 0, as torchmetrics) of the per-subset values. Per-subset values equal
torchmetrics' ``poly_mmd`` on the same subsets. Unlike torchmetrics, which raises when a set has fewer
than ``subset_size`` samples, m shrinks to the smaller set (StyleGAN-V, clean-fid).

Computed in float64. When the full kernel matrices fit (``max_gram_bytes``), they are computed once with
three matmuls and each subset only indexes them; otherwise each subset computes its own kernels.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["kid", "kid_per_subset", "kid_subset_indices", "poly_kernel", "unbiased_mmd2"]


def _features(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a feature matrix [n, d]; got shape {x.shape}")
    return x


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                coef0: float = 1.0) -> np.ndarray:
    """(gamma x y^T + coef0)^degree for x [n, d], y [m, d]; gamma defaults to 1/d."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def unbiased_mmd2(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices of two samples of equal size m >= 2 (diagonals excluded)."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / m**2)


def kid_subset_indices(n_real: int, n_fake: int, subsets: int, subset_size: int,
                       seed: int | np.random.Generator = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``subsets`` pairs (real rows, fake rows) of m = min(subset_size, n_real, n_fake) rows each, each drawn
    without replacement (numpy Generator; real then fake per subset)."""
    m = min(subset_size, n_real, n_fake)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set and subset_size >= 2; got n_real={n_real}, "
                         f"n_fake={n_fake}, subset_size={subset_size}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1; got {subsets}")
    rng = np.random.default_rng(seed)
    return [(rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False)) for _ in range(subsets)]


def kid_per_subset(real_feats: Any, fake_feats: Any, subset_indices: list[tuple[np.ndarray, np.ndarray]], *,
                   degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                   max_gram_bytes: int = 512 * 2**20) -> np.ndarray:
    """Unbiased MMD^2 on each (real rows, fake rows) pair of ``subset_indices``; float64 [subsets]."""
    x, y = _features(real_feats, "real_feats"), _features(fake_feats, "fake_feats")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real_feats and fake_feats differ in d: {x.shape} vs {y.shape}")
    kw = dict(degree=degree, gamma=1.0 / x.shape[1] if gamma is None else gamma, coef0=coef0)
    n_x, n_y = x.shape[0], y.shape[0]
    if 8 * (n_x + n_y) ** 2 <= max_gram_bytes:
        k_xx, k_xy, k_yy = poly_kernel(x, x, **kw), poly_kernel(x, y, **kw), poly_kernel(y, y, **kw)
        return np.array([unbiased_mmd2(k_xx[np.ix_(i, i)], k_xy[np.ix_(i, j)], k_yy[np.ix_(j, j)])
                         for i, j in subset_indices])
    values = []
    for i, j in subset_indices:
        xs, ys = x[i], y[j]
        values.append(unbiased_mmd2(poly_kernel(xs, xs, **kw), poly_kernel(xs, ys, **kw), poly_kernel(ys, ys, **kw)))
    return np.array(values)


def kid(real_feats: Any, fake_feats: Any, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets) between features [N_real, d] and [N_fake, d]; numpy or torch.

    See the module docstring for the protocol. With subset_size >= both set sizes every subset is the whole
    set and the result does not depend on the seed (std 0).
    """
    x, y = _features(real_feats, "real_feats"), _features(fake_feats, "fake_feats")
    values = kid_per_subset(x, y, kid_subset_indices(x.shape[0], y.shape[0], subsets, subset_size, seed),
                            degree=degree, gamma=gamma, coef0=coef0)
    return float(values.mean()), float(values.std())
