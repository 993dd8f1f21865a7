"""Fréchet distance between two Gaussians (FID, FVD) in float64, without ``scipy.linalg.sqrtm``.

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

pytorch-fid, StyleGAN-V and the TF FVD code compute the last term with ``scipy.linalg.sqrtm(S1 @ S2)`` (a
Schur decomposition of a non-symmetric d x d matrix, the slow part of FID). Only the trace is
needed, and the eigenvalues of S1 S2 equal those of the symmetric PSD matrix B^T S2 B for any factor
S1 = B B^T (a Cholesky factor, or the symmetric square root sqrt(S1), for which B^T S2 B = sqrt(S1) S2
sqrt(S1)). So

    tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(B^T S2 B)),

one symmetric eigenvalue problem (eigenvalues only); eigenvalues that round-off pushes below zero are
clipped to 0. For a Cholesky factor B^T S2 B costs two triangular multiplies. The factor of the reference
covariance can be computed once (:func:`matrix_root`) and reused for every model scored against it
(``root1=``); the speed against sqrtm is measured by ``tests/perf/test_perf_frechet.py`` (figures in
``results/perf/``). Results agree with the
sqrtm formula to ~1e-11 relative at full rank and ~5e-8 when rank-deficient, where they are closer than
sqrtm to an exact SVD-based reference (tests assert 1e-6).

Bootstrap replicates come as row factors (S = A^T A, A the weighted centred rows of a resample):
:func:`frechet_distances_from_factors` computes a batch of them from the nuclear norm of A1 A2^T, exactly at
any rank, in torch float64 on one thread (:func:`one_thread`).

Rank-deficient covariances (fewer samples than dimensions, N <= d) are legal: the distance is still
finite and well defined, but strongly biased; a :class:`RankDeficientWarning` says so.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg import blas, lapack

__all__ = ["MatrixRoot", "RankDeficientWarning", "frechet_distance", "frechet_distance_from_factors",
           "frechet_distances_from_factors", "matrix_root", "matrix_sqrt_psd", "one_thread", "trace_sqrt_product"]

_EPS = np.finfo(np.float64).eps


class RankDeficientWarning(UserWarning):
    """A covariance matrix has numerical rank below its dimension (usually: fewer samples than features)."""


@dataclass(frozen=True, eq=False)
class MatrixRoot:
    """A factor ``B`` [d, r] (float64) of a PSD covariance: ``sigma = B @ B.T``; cache it for a reference set.

    ``method`` is ``"cholesky"`` (``B`` lower triangular, d x d; used when sigma is numerically positive
    definite) or ``"eigh"`` (``B = V sqrt(L)`` over the non-zero eigenvalues, r columns). ``rank`` is the
    numerical rank of sigma (None for a user-supplied array, method ``"array"``) and ``trace`` its trace (a
    cheap consistency check against ``sigma1``).
    """

    factor: np.ndarray
    method: str
    rank: int | None
    trace: float

    @property
    def dim(self) -> int:
        return self.factor.shape[0]


def _to_float64(x: Any, name: str) -> np.ndarray:
    """numpy array or torch tensor (any device) -> float64 numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a numpy array or torch tensor of numbers, got {type(x).__name__}") from err


def _check_cov(sigma: np.ndarray, name: str, d: int | None = None) -> None:
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1]:
        raise ValueError(f"{name} must be a square covariance matrix [d, d]; got shape {sigma.shape}")
    if d is not None and sigma.shape[0] != d:
        raise ValueError(f"{name} has shape {sigma.shape} but the means have d = {d}")
    if not np.isfinite(sigma).all():
        raise ValueError(f"{name} contains NaN or inf")
    # Symmetry on up to 64 evenly spaced rows: O(64 d) instead of O(d^2); a product or a factor passed by
    # mistake is asymmetric almost everywhere.
    rows = np.unique(np.linspace(0, sigma.shape[0] - 1, 64).astype(np.intp))
    band, band_t = sigma[rows], sigma[:, rows].T
    scale = max(float(np.abs(band).max()), np.finfo(np.float64).tiny)
    asym = float(np.abs(band - band_t).max())
    if asym > 1e-8 * scale:
        raise ValueError(f"{name} is not symmetric (max |S - S^T| = {asym:.3g}, max |S| = {scale:.3g}); "
                         "pass a covariance matrix, not a product or a factor")


def _warn_rank(name: str, rank: int, d: int) -> None:
    warnings.warn(f"{name} is rank-deficient: numerical rank {rank} < d = {d} (a covariance of N samples has "
                  f"rank <= N - 1; use N > d samples). The Fréchet distance is computed anyway, but it is "
                  f"strongly biased at this N: report N beside it.", RankDeficientWarning, stacklevel=3)


def _rank_tol(largest: float, d: int) -> float:
    """Eigenvalues (or Cholesky pivots) at or below this are round-off (numpy.linalg.matrix_rank's rule)."""
    return max(largest, 0.0) * d * _EPS


def matrix_root(sigma: Any, *, method: str = "auto", name: str = "sigma") -> MatrixRoot:
    """Factor a PSD covariance ``sigma`` [d, d] as ``B @ B.T`` for :func:`frechet_distance` (``root1=``).

    ``method="auto"`` tries a Cholesky factorisation (the cheap path) and falls back to a symmetric
    eigen-decomposition with negative round-off eigenvalues clipped to 0 when sigma is not numerically
    positive definite (a pivot below d * eps * max diag). ``"cholesky"`` raises ``np.linalg.LinAlgError``
    instead of falling back; ``"eigh"`` always uses the eigen-decomposition. Warns
    :class:`RankDeficientWarning` when the numerical rank is below d.
    """
    sigma = _to_float64(sigma, name)
    _check_cov(sigma, name)
    root = _matrix_root(sigma, method, name)
    if root.rank < root.dim:
        _warn_rank(name, root.rank, root.dim)
    return root


def _matrix_root(sigma: np.ndarray, method: str, name: str) -> MatrixRoot:
    if method not in ("auto", "cholesky", "eigh"):
        raise ValueError(f"method must be 'auto', 'cholesky' or 'eigh'; got {method!r}")
    d, trace = sigma.shape[0], float(np.trace(sigma))
    if method in ("auto", "cholesky"):
        factor = _cholesky_or_none(sigma)
        if factor is not None:
            return MatrixRoot(factor, "cholesky", d, trace)
        if method == "cholesky":
            raise np.linalg.LinAlgError(f"{name} is not numerically positive definite; use method='eigh'")
    evals, evecs = scipy.linalg.eigh(sigma, driver="evr", check_finite=False)
    rank = int((evals > _rank_tol(evals[-1], d)).sum())
    keep = evals > 0  # clip negative round-off; exact zeros add nothing to B^T S2 B, so drop those columns
    return MatrixRoot(evecs[:, keep] * np.sqrt(evals[keep]), "eigh", rank, trace)


def _cholesky_or_none(sigma: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor (Fortran order), or None when a pivot is not clearly above round-off."""
    # sigma is symmetric, so its transpose is the same matrix in Fortran order: no copy on the way in.
    factor, info = lapack.dpotrf(sigma.T, lower=1, clean=1, overwrite_a=0)
    if info != 0:
        return None
    pivots = np.diagonal(factor) ** 2
    if pivots.min() <= _rank_tol(float(np.diagonal(sigma).max()), sigma.shape[0]):
        return None
    return factor


def matrix_sqrt_psd(sigma: Any) -> np.ndarray:
    """Symmetric PSD square root ``V sqrt(max(L, 0)) V^T`` of a covariance [d, d] (float64, via eigh).

    Also accepted as ``root1`` by :func:`frechet_distance`; :func:`matrix_root` is cheaper to build and use.
    """
    sigma = _to_float64(sigma, "sigma")
    _check_cov(sigma, "sigma")
    evals, evecs = scipy.linalg.eigh(sigma, driver="evr", check_finite=False)
    return (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T


def _as_root(root: Any, d: int, trace1: float) -> MatrixRoot:
    """A MatrixRoot, or an array B with sigma1 = B B^T (e.g. from matrix_sqrt_psd), checked against sigma1."""
    if not isinstance(root, MatrixRoot):
        factor = _to_float64(root, "root1")
        if factor.ndim != 2:
            raise ValueError(f"root1 must be a MatrixRoot or a factor B [d, r] with sigma1 = B @ B.T; "
                             f"got shape {factor.shape}")
        root = MatrixRoot(factor, "array", None, float(np.einsum("ij,ij->", factor, factor)))
    if root.dim != d:
        raise ValueError(f"root1 is a factor of a {root.dim}-d covariance but sigma1 is {d} x {d}")
    if not np.isclose(root.trace, trace1, rtol=1e-6, atol=1e-12 * max(abs(trace1), 1.0)):
        raise ValueError(f"root1 does not belong to sigma1: trace(B B^T) = {root.trace:.10g} but "
                         f"trace(sigma1) = {trace1:.10g}; rebuild it with matrix_root(sigma1)")
    return root


def _congruence(root: MatrixRoot, sigma2: np.ndarray) -> np.ndarray:
    """B^T S2 B [r, r] (Fortran order). Two triangular multiplies (BLAS trmm) for a Cholesky factor."""
    b = root.factor
    if root.method == "cholesky":
        s2b = blas.dtrmm(1.0, b, sigma2.T, side=1, lower=1)  # S2 @ L  (S2 symmetric: S2.T is S2, F-ordered)
        return blas.dtrmm(1.0, b, s2b, side=0, lower=1, trans_a=1, overwrite_b=1)  # L^T @ (S2 L)
    return b.T @ sigma2 @ b


def trace_sqrt_product(root1: MatrixRoot, sigma2: np.ndarray) -> tuple[float, np.ndarray]:
    """tr((S1 S2)^(1/2)) and the eigenvalues of B^T S2 B (ascending, before clipping). No input checks."""
    evals = scipy.linalg.eigh(_congruence(root1, sigma2), eigvals_only=True, driver="evr", lower=True,
                              overwrite_a=True, check_finite=False)
    return float(np.sqrt(np.clip(evals, 0.0, None)).sum()), evals


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, root1: MatrixRoot | Any = None,
                     warn_rank: bool = True) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); numpy or torch inputs, float64 maths.

    mu1, mu2: [d]; sigma1, sigma2: [d, d] symmetric PSD (any divisor: the caller chose 1/N or 1/(N-1)).
    root1: optional cached factor of sigma1 (:func:`matrix_root`, or an array B with sigma1 = B B^T such as
    :func:`matrix_sqrt_psd`); pass it when scoring several sets against one reference so each call costs one
    d x d eigenvalue problem. Returns a Python float (about -1e-12 * tr(S) rather than 0 for identical
    inputs). Warns :class:`RankDeficientWarning` for each rank-deficient covariance (the rank of an array
    ``root1`` is not checked). Checking sigma2 is free unless cond(S1) cond(S2) exceeds ~1/(d eps), when it
    costs one Cholesky of sigma2; ``warn_rank=False`` skips the checks (bootstrap loops).
    """
    mu1, mu2 = _to_float64(mu1, "mu1"), _to_float64(mu2, "mu2")
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors [d] of equal length; got mu1 {mu1.shape}, mu2 {mu2.shape}")
    d = mu1.shape[0]
    sigma1, sigma2 = _to_float64(sigma1, "sigma1"), _to_float64(sigma2, "sigma2")
    _check_cov(sigma1, "sigma1", d)
    _check_cov(sigma2, "sigma2", d)
    trace1, trace2 = float(np.trace(sigma1)), float(np.trace(sigma2))
    root = _matrix_root(sigma1, "auto", "sigma1") if root1 is None else _as_root(root1, d, trace1)
    tr_sqrt, evals = trace_sqrt_product(root, sigma2)
    if warn_rank:
        if root.rank is not None and root.rank < d:
            _warn_rank("sigma1", root.rank, d)
        rank2 = _rank_sigma2(root, sigma2, evals)
        if rank2 < d:
            _warn_rank("sigma2", rank2, d)
    diff = mu1 - mu2
    return float(diff @ diff + trace1 + trace2 - 2.0 * tr_sqrt)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels (MKL/OpenMP) on one thread inside the block; the previous count is restored.

    For many small decompositions (bootstrap replicates at d ~ 100) a second BLAS thread adds
    synchronisation, not speed, and on a loaded machine a spinning thread that loses its core turns each
    call into a time slice: 200 bootstrap replicates at d = 128 took 48 s on 2 threads against 1.9 s on
    one (2 cores, load average 10), and even one 1024 x 1024 SVD took 5.0 s on 2 threads against 0.8 s on one
    (load average 8). Independent replicates are better parallelised across processes than inside a call.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def frechet_distances_from_factors(mu1: Any, a1: Any, mu2: Any, a2: Any) -> np.ndarray:
    """FD between N(mu1[b], A1[b]^T A1[b]) and N(mu2[b], A2[b]^T A2[b]) for a batch b; float64 [B].

    mu1, mu2: [B, d]; a1: [B, m1, d], a2: [B, m2, d] (numpy or torch; rows of zeros are allowed and add
    nothing, so a batch of weighted row sets can be padded to one m). Exact for any ranks and any m, d:

        tr((S1 S2)^(1/2)) = sum of the singular values of A1 A2^T  (the nuclear norm),

    since the eigenvalues of S1 S2 = A1^T (A1 A2^T A2) are, besides zeros, those of (A1 A2^T)(A1 A2^T)^T.
    With more rows than dimensions, A_i is first replaced by a d x d factor C with C^T C = A^T A (the R of
    its QR factorisation; above 2d rows the transposed Cholesky factor of A^T A where that is clearly positive
    definite, which costs about half as much), so the product is at most min(m1, d) x min(m2, d) and its
    singular values are unchanged. No eigenvalue of a squared matrix is square-rooted, so rank-deficient
    covariances lose nothing to round-off (the d x d eigenvalue route loses up to ~sqrt(eps) on each null
    direction). Computed in torch float64 on the CPU, on one thread (:func:`one_thread`).
    """
    import torch

    def tensor(x: Any, name: str, ndim: int) -> Any:
        t = x.detach().to("cpu", torch.float64) if isinstance(x, torch.Tensor) else \
            torch.from_numpy(np.require(_to_float64(x, name), requirements=["C", "W"]))
        if t.ndim != ndim:
            raise ValueError(f"{name} must have {ndim} dimensions ({'[B, d]' if ndim == 2 else '[B, m, d]'}); "
                             f"got shape {tuple(t.shape)}")
        return t

    m1, f1, m2, f2 = tensor(mu1, "mu1", 2), tensor(a1, "a1", 3), tensor(mu2, "mu2", 2), tensor(a2, "a2", 3)
    batch, d = m1.shape
    for name, t in (("mu2", m2), ("a1", f1), ("a2", f2)):
        if t.shape[0] != batch or t.shape[-1] != d:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but mu1 is [B = {batch}, d = {d}]")
    with one_thread():
        c1, c2 = _row_reduce(f1), _row_reduce(f2)
        nuclear = torch.linalg.svdvals(c1 @ c2.transpose(1, 2)).sum(1)
        diff = m1 - m2
        value = (diff * diff).sum(1) + (f1 * f1).sum((1, 2)) + (f2 * f2).sum((1, 2)) - 2.0 * nuclear
    return value.numpy()


def _row_reduce(a: Any) -> Any:
    """C [B, min(m, d), d] with C^T C = A^T A for A [B, m, d] (torch float64): A itself when m <= d; else the
    transposed Cholesky factor of A^T A when m > 2d and that is clearly positive definite (one Gram product, about
    half the flops of a QR), and the R of A's QR factorisation otherwise (any rank). The Cholesky route is tried
    only when the first item's A^T A passes, so a rank-deficient set does not pay for failed factorisations."""
    import torch

    m, d = a.shape[1], a.shape[2]
    if m <= d:
        return a
    # resamples of a rank-deficient set are all rank-deficient: then QR at once (one item: the attempt is the probe)
    if m > 2 * d and (a.shape[0] == 1 or _clearly_pd(a[:1])):
        gram = a.transpose(1, 2) @ a
        lower, ok = _cholesky_pd(gram)
        upper = lower.transpose(1, 2)
        if bool(ok.all()):
            return upper
        failed = torch.nonzero(~ok).flatten()
        upper[failed] = torch.linalg.qr(a[failed], mode="r")[1]
        return upper
    return torch.linalg.qr(a, mode="r")[1]


def _cholesky_pd(gram: Any) -> tuple[Any, Any]:
    """(lower Cholesky factors [B, d, d], bool [B]: factorised with every pivot above d * eps * max diag, the rule
    of :func:`_cholesky_or_none`)."""
    import torch

    lower, info = torch.linalg.cholesky_ex(gram)
    pivots = torch.diagonal(lower, dim1=1, dim2=2) ** 2
    tol = torch.diagonal(gram, dim1=1, dim2=2).amax(1) * gram.shape[-1] * _EPS
    return lower, (info == 0) & (pivots.amin(1) > tol)


def _clearly_pd(a: Any) -> bool:
    """Is A^T A of the first item [1, m, d] clearly positive definite?"""
    return bool(_cholesky_pd(a.transpose(1, 2) @ a)[1].all())


def frechet_distance_from_factors(mu1: Any, a1: Any, mu2: Any, a2: Any) -> float:
    """FD between N(mu1, A1^T A1) and N(mu2, A2^T A2); mu: [d], A: [m, d] (e.g. weighted centred rows).

    One item of :func:`frechet_distances_from_factors` (the nuclear norm of A1 A2^T, exact at any rank; no
    rank warnings: bootstrap loops).
    """
    mu1, a1, mu2, a2 = (_to_float64(x, name) for x, name in ((mu1, "mu1"), (a1, "a1"), (mu2, "mu2"), (a2, "a2")))
    if mu1.ndim != 1 or a1.ndim != 2 or a2.ndim != 2:
        raise ValueError(f"expected mu1, mu2 [d] and a1, a2 [m, d]; got {mu1.shape}, {a1.shape}, {a2.shape}")
    return float(frechet_distances_from_factors(mu1[None], a1[None], mu2[None], a2[None])[0])


def _rank_sigma2(root: MatrixRoot, sigma2: np.ndarray, evals: np.ndarray) -> int:
    """Numerical rank of sigma2, by the same rule as sigma1's (Cholesky pivots, then eigenvalues).

    Free in the usual case: B is invertible for a Cholesky root, so when every eigenvalue of B^T S2 B is
    clearly above round-off, sigma2 has full rank. Small eigenvalues can also come from an ill-conditioned
    sigma1, so only then is sigma2 factorised itself.
    """
    d = sigma2.shape[0]
    if root.method == "cholesky" and evals[0] > _rank_tol(evals[-1], d):
        return d
    if _cholesky_or_none(sigma2) is not None:
        return d
    ev2 = scipy.linalg.eigh(sigma2, eigvals_only=True, driver="evr", check_finite=False)
    return int((ev2 > _rank_tol(ev2[-1], d)).sum())
