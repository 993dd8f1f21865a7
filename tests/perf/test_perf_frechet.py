"""Benchmarks of the Fréchet distance (outside the default test run): scipy sqrtm vs eigenvalues.

Run with ``tox -e bench`` (or ``pytest tests/perf/test_perf_frechet.py --benchmark-only``). The baseline is
the formula pytorch-fid and StyleGAN-V use, ``scipy.linalg.sqrtm(S1 @ S2)``; ``frechet_distance`` is timed
cold (factorises the reference covariance) and with the reference's factor cached (``root1=``), which is
the cost of scoring one more model against cached real statistics. d = 2048 is FID's Inception pool3,
d = 400 is FVD's I3D logits. Covariances come from 4000 correlated feature vectors (full rank).
``frechet_distance`` checks the rank of both covariances (the default), as a user's call would.

The bootstrap benchmarks (``test_bootstrap_*``, below) time 200 replicates of the video-grouped FD bootstrap,
the previous per-replicate route against the batched one-thread route, on 128-d features.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.linalg

from benchmarks.metrics.bootstrap import GroupedRows
from benchmarks.metrics.fd import frechet_replicates
from benchmarks.metrics.frechet import frechet_distance, matrix_root

DIMS = [400, 2048]
N_FEATURES = 4000


def sqrtm_fd(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's formula for SciPy >= 1.16 (no ``disp``); its eps retry never triggers at full rank."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _stats(d, seed, scale):
    """Mean and covariance of 4000 correlated features: spectrum decaying over 2 decades (sample condition
    number about 1e5), random eigenvectors per set, so the two covariances do not commute."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    mix = np.geomspace(3.0, 0.03, d)[:, None] * rotation
    x = scale * rng.standard_normal((N_FEATURES, d)) @ mix + rng.uniform(0.0, 1.0, d)
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.fixture(scope="module", params=DIMS, ids=[str(d) for d in DIMS])
def case(request):
    d = request.param
    return {"d": d, "stats": (*_stats(d, 1, 1.0), *_stats(d, 2, 1.1))}


@pytest.fixture(scope="module")
def reference_values():
    return {}  # d -> sqrtm result, filled by the baseline benchmark


def _expected(case, reference_values):
    d = case["d"]
    if d not in reference_values:
        reference_values[d] = sqrtm_fd(*case["stats"])
    return reference_values[d]


def baseline_name(case):
    """pytest-benchmark names a parametrised benchmark like its test node: ``test_fd_scipy_sqrtm[2048]``."""
    return f"test_fd_scipy_sqrtm[{case['d']}]"


def test_fd_scipy_sqrtm(benchmark, case, reference_values):
    benchmark.extra_info.update(items=1, unit="distances", d=case["d"])
    value = benchmark.pedantic(sqrtm_fd, args=case["stats"], rounds=3, iterations=1)
    reference_values[case["d"]] = value


def test_fd_eigh_cold(benchmark, case, reference_values):
    benchmark.extra_info.update(items=1, unit="distances", d=case["d"], baseline=baseline_name(case))
    value = benchmark.pedantic(frechet_distance, args=case["stats"], rounds=3, iterations=1)
    assert value == pytest.approx(_expected(case, reference_values), rel=1e-6)


def test_fd_eigh_cached_root(benchmark, case, reference_values):
    mu1, sigma1, mu2, sigma2 = case["stats"]
    root = matrix_root(sigma1)
    benchmark.extra_info.update(items=1, unit="distances", d=case["d"], baseline=baseline_name(case))
    value = benchmark.pedantic(frechet_distance, args=case["stats"], kwargs={"root1": root}, rounds=3, iterations=1)
    assert value == pytest.approx(_expected(case, reference_values), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# bootstrap replicates: the previous per-replicate route vs the batched one-thread route
#
# 200 replicates (the CLI default) of the video-grouped bootstrap (benchmarks.metrics.fd.frechet_replicates)
# on 128-d features, the surgical FID's and FVD's size: 24 vs 24 videos of 8 frames (the surgical FID at the
# quick start's N: 192 rows > d), 100 vs 100 videos of 8 frames (issue 15's "a user's own 100 videos") and 24 vs
# 24 videos of one clip (the surgical FVD: rows < d). The baseline is the code up to commit f59a63b, one
# replicate at a time through numpy/scipy with their default BLAS threads; the batched route must give the
# same replicates to 1e-8 relative.

N_BOOT = 200
BOOT_CASES = {"fid-24x8": (24, 8), "fid-100x8": (100, 8), "fvd-24x1": (24, 1)}  # videos per set, rows per video
BOOT_DIM = 128


def _frame_features(videos, frames, d, seed, shift=0.0):
    """ReLU features of ``frames`` correlated frames per video with 4 dead units (rank < d at any N)."""
    rng = np.random.default_rng(seed)
    per_video = rng.standard_normal((videos, 1, d)) @ (np.geomspace(1, 0.01, d)[:, None] * rng.standard_normal((d, d)))
    x = np.maximum(per_video + 0.3 * rng.standard_normal((videos, frames, d)) + shift, 0.0)
    x[..., :4] = 0.0
    return GroupedRows(x.reshape(-1, d), np.repeat(np.arange(videos), frames))


def previous_replicates(real, fake, divisor, n_boot, seed):
    """The replicates as computed up to commit f59a63b (per replicate: sample-space SVD when both sets have
    fewer rows than d, else frechet_distance on the d x d covariances A^T A)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        mu_r, a_r = real.weighted(real.resample(rng), divisor)
        mu_f, a_f = fake.weighted(fake.resample(rng), divisor)
        diff = mu_r - mu_f
        if max(len(a_r), len(a_f)) < a_r.shape[1]:
            nuclear = np.linalg.svd(a_r @ a_f.T, compute_uv=False).sum()
            out[b] = diff @ diff + np.einsum("ij,ij->", a_r, a_r) + np.einsum("ij,ij->", a_f, a_f) - 2 * nuclear
        else:
            s_r, s_f = a_r.T @ a_r, a_f.T @ a_f
            out[b] = frechet_distance(mu_r, (s_r + s_r.T) / 2, mu_f, (s_f + s_f.T) / 2, warn_rank=False)
    return out


@pytest.fixture(scope="module", params=list(BOOT_CASES), ids=list(BOOT_CASES))
def boot_case(request):
    videos, frames = BOOT_CASES[request.param]
    return {"name": request.param, "sets": (_frame_features(videos, frames, BOOT_DIM, 1),
                                           _frame_features(videos, frames, BOOT_DIM, 2, shift=0.1))}


def test_bootstrap_previous(benchmark, boot_case):
    benchmark.extra_info.update(items=N_BOOT, unit="replicates", d=BOOT_DIM, rows=len(boot_case["sets"][0].xc),
                                blas_threads="library default", load_average=os.getloadavg())
    replicates = benchmark.pedantic(previous_replicates, args=(*boot_case["sets"], "N-1", N_BOOT, 7), rounds=1,
                                    iterations=1)
    assert np.isfinite(replicates).all()


def test_bootstrap_batched(benchmark, boot_case):
    real, fake = boot_case["sets"]
    benchmark.extra_info.update(items=N_BOOT, unit="replicates", d=BOOT_DIM, rows=len(real.xc), torch_threads=1,
                                load_average=os.getloadavg(), baseline=f"test_bootstrap_previous[{boot_case['name']}]")
    replicates = benchmark.pedantic(frechet_replicates, args=(real, fake), rounds=3, iterations=1,
                                    kwargs={"divisor": "N-1", "n_boot": N_BOOT, "seed": 7})
    # the first 20 draws of a seed are the same whatever n_boot is
    np.testing.assert_allclose(replicates[:20], previous_replicates(real, fake, "N-1", 20, 7), rtol=1e-8)
