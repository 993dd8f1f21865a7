"""Benchmarks of the Fréchet distance (outside the default test run): scipy sqrtm vs eigenvalues.

Run with ``tox -e bench`` (or ``pytest tests/perf/test_perf_frechet.py --benchmark-only``). The baseline is
the formula pytorch-fid and StyleGAN-V use, ``scipy.linalg.sqrtm(S1 @ S2)``; ``frechet_distance`` is timed
cold (factorises the reference covariance) and with the reference's factor cached (``root1=``), which is
the cost of scoring one more model against cached real statistics. d = 2048 is FID's Inception pool3,
d = 400 is FVD's I3D logits. Covariances come from 4000 correlated feature vectors (full rank).
``frechet_distance`` checks the rank of both covariances (the default), as a user's call would.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

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
