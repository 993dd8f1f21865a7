"""Scoring as the harness runs it: the video-grouped bootstrap against explicit per-video resampling, the
sample-space distance and the low-rank reference root against frechet_distance, KID, CLIPScore aggregation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmarks.metrics import CLIPScore, get_protocol
from benchmarks.metrics.bootstrap import GroupedRows, interval
from benchmarks.metrics.clipscore import ClipState
from benchmarks.metrics.fd import frechet_point, grouped_bootstrap_frechet, reference_root
from benchmarks.metrics.frechet import RankDeficientWarning, frechet_distance, frechet_distance_from_factors
from benchmarks.metrics.kid import kid_with_interval
from benchmarks.metrics.mmd import kid
from benchmarks.metrics.stats import FeatureStats
from ophora.seeding import derive_seed


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + shift


def _explicit_bootstrap(real, fake, divisor, n_boot, seed):
    """Per-video bootstrap by explicit resampling: each replicate draws len(real) real rows, then len(fake)
    fake rows, with replacement, and computes the FD of the resampled sets from numpy.cov."""
    rng, bias = np.random.default_rng(seed), divisor == "N"

    def gaussian(x):
        return x.mean(0), np.cov(x, rowvar=False, bias=bias)

    replicates = []
    for _ in range(n_boot):
        r, f = real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))]
        replicates.append(frechet_distance(*gaussian(r), *gaussian(f), warn_rank=False))
    return frechet_distance(*gaussian(real), *gaussian(fake)), np.array(replicates)


@pytest.mark.parametrize("divisor", ["N", "N-1"])
def test_one_row_per_video_reproduces_explicit_resampling(divisor):
    real, fake = _features(30, 8, 0), _features(25, 8, 1, shift=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        reference_point, replicates = _explicit_bootstrap(real, fake, divisor, 40, 5)
    stats_r, stats_f = FeatureStats().update(real), FeatureStats().update(fake)
    point, _ = frechet_point(stats_r, stats_f, divisor)
    ours = grouped_bootstrap_frechet(GroupedRows(real, np.arange(30)), GroupedRows(fake, np.arange(25) + 100),
                                     point, divisor=divisor, n_boot=40, seed=5)
    assert point == pytest.approx(reference_point, rel=1e-10)
    assert (ours["low"], ours["high"]) == pytest.approx(interval(point, replicates, 0.95, "shifted"), rel=1e-8)
    assert ours["boot_std"] == pytest.approx(replicates.std(ddof=1), rel=1e-8)


def test_frames_of_a_video_are_resampled_together():
    rows = _features(12, 4, 2)
    grouped = GroupedRows(rows, np.repeat([5, 9, 11], 4))  # three videos of four frames each
    w = grouped.resample(np.random.default_rng(0))
    assert grouped.videos == 3 and w.sum() == 12
    assert all(len(set(w[i:i + 4])) == 1 for i in (0, 4, 8))


# frechet_distance is accurate to ~5e-8 relative on rank-deficient covariances (sqrt of round-off eigenvalues
# in the null space); the sample-space form has no null space. Full rank: agreement to round-off.
@pytest.mark.parametrize("n,d,rel", [(6, 50, 1e-7), (80, 20, 1e-10)])
def test_sample_space_distance_equals_frechet_distance(n, d, rel):
    a, b = GroupedRows(_features(n, d, 3), np.arange(n)), GroupedRows(_features(n + 3, d, 4, 1.0), np.arange(n + 3))
    w_a, w_b = a.resample(np.random.default_rng(1)), b.resample(np.random.default_rng(2))
    mu_a, f_a = a.weighted(w_a, "N-1")
    mu_b, f_b = b.weighted(w_b, "N-1")
    expanded_a = np.repeat(a.xc + a.mean, w_a.astype(int), axis=0)
    expanded_b = np.repeat(b.xc + b.mean, w_b.astype(int), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        expected = frechet_distance(expanded_a.mean(0), np.cov(expanded_a, rowvar=False),
                                    expanded_b.mean(0), np.cov(expanded_b, rowvar=False))
    assert frechet_distance_from_factors(mu_a, f_a, mu_b, f_b) == pytest.approx(expected, rel=rel)


def test_low_rank_reference_root_gives_the_same_distance():
    real, fake = FeatureStats().update(_features(9, 300, 5)), FeatureStats().update(_features(11, 300, 6, 0.5))
    root = reference_root(real, "N-1")
    assert root.method == "pivoted-cholesky" and root.rank == 8 and root.factor.shape == (300, 8)
    np.testing.assert_allclose(root.factor @ root.factor.T, real.cov("N-1"), atol=1e-12)
    value, messages = frechet_point(real, fake, "N-1", root)
    plain, _ = frechet_point(real, fake, "N-1")
    assert value == pytest.approx(plain, rel=1e-7) and any("rank-deficient" in m for m in messages)
    full = FeatureStats().update(_features(40, 10, 7))
    assert reference_root(full, "N").method == "cholesky"


def test_kid_point_is_benchmarks_metrics_kid_and_interval_brackets_it():
    real, fake = _features(20, 6, 8), _features(16, 6, 9, 0.8)
    protocol = get_protocol("kid")
    out = kid_with_interval(protocol, GroupedRows(real, np.arange(20)), GroupedRows(fake, np.arange(16)), seed=3,
                            n_boot=30)
    expected = kid(real, fake, subsets=100, subset_size=1000, seed=derive_seed(3, "kid"))
    assert (out["value"], out["std"]) == pytest.approx(expected, rel=1e-12)
    assert out["ci"]["low"] <= out["value"] <= out["ci"]["high"] and out["subset_size"] == 16


def _clip_state(scores, tokens=None):
    n = len(scores)
    return ClipState([f"v{i}.mp4" for i in range(n)], ["a prompt"] * n, 77).update(
        range(n), scores, [5] * n if tokens is None else tokens)


def test_clipscore_is_clamped_after_averaging():
    clip = CLIPScore()
    assert clip.compute(None, _clip_state([3.0, -1.0]))["value"] == pytest.approx(1.0)  # not mean(max(s, 0)) = 1.5
    negative = clip.compute(None, _clip_state([-6.0, 2.0], tokens=[80, 5]))
    assert negative["value"] == 0.0 and negative["mean_unclamped"] == pytest.approx(-2.0)
    assert negative["n_truncated"] == 1 and negative["n_fake"] == 2 and negative["context_length"] == 77
    with_ci = clip.compute(None, _clip_state([20.0, 22.0, 25.0, 21.0]), n_boot=200)
    assert 20.0 <= with_ci["ci"]["low"] <= 22.0 <= with_ci["ci"]["high"] <= 25.0
    assert clip.compute(None, _clip_state([]))["value"] is None
    assert clip.per_video(_clip_state([3.0]))[0] == {"path": "v0.mp4", "prompt": "a prompt", "score": 3.0,
                                                     "tokens": 5, "truncated": False}
