"""Bootstrap intervals as the harness computes them: weighted resampling is exact, the interval formulas, the
FID object's point and interval, and coverage by simulation."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics import FID, protocol_for
from benchmarks.metrics.bootstrap import GroupedRows, bootstrap_mean, interval
from benchmarks.metrics.fd import frechet_point, frechet_replicates
from benchmarks.metrics.frechet import frechet_distance
from benchmarks.metrics.stats import FeatureStats

# Two Gaussian sets with diagonal covariances: FD_inf = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
D, N = 8, 500
VAR_REAL, VAR_FAKE, MU_FAKE = np.linspace(0.5, 2.0, D), np.linspace(1.0, 1.5, D), np.full(D, 0.1)
FD_INF = float(MU_FAKE @ MU_FAKE + ((np.sqrt(VAR_REAL) - np.sqrt(VAR_FAKE)) ** 2).sum())


def draw(rng, n=N):
    return rng.standard_normal((n, D)) * np.sqrt(VAR_REAL), rng.standard_normal((n, D)) * np.sqrt(VAR_FAKE) + MU_FAKE


def sample_fd(x, y):
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def test_weighted_statistics_equal_explicit_resampling():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5)) + 30.0
    counts = np.bincount(rng.integers(0, 60, 60), minlength=60)
    resampled = np.repeat(x, counts, axis=0)
    for divisor, bias in (("N-1", False), ("N", True)):
        mean, factor = GroupedRows(x, np.arange(60)).weighted(counts.astype(np.float64), divisor)
        np.testing.assert_allclose(mean, resampled.mean(0), rtol=1e-13)
        np.testing.assert_allclose(factor.T @ factor, np.cov(resampled, rowvar=False, bias=bias), rtol=1e-11,
                                   atol=1e-13)


def test_weighted_batch_equals_weighted():
    rng = np.random.default_rng(4)
    grouped = GroupedRows(rng.standard_normal((30, 6)) + 5.0, np.repeat(np.arange(10), 3))
    weights = np.stack([grouped.resample(rng) for _ in range(4)])
    for divisor in ("N", "N-1"):
        means, factors = grouped.weighted_batch(weights, divisor)
        assert factors.shape[0] == 4 and factors.shape[1] == int((weights > 0).sum(1).max())
        for b in range(4):
            mean, factor = grouped.weighted(weights[b], divisor)
            np.testing.assert_allclose(means[b].numpy(), mean, rtol=1e-14)
            np.testing.assert_allclose(factors[b].numpy().T @ factors[b].numpy(), factor.T @ factor, rtol=1e-12,
                                       atol=1e-14)
    with pytest.raises(ValueError, match=r"weights must be \[B, n = 30\]; got shape \(30,\)"):
        grouped.weighted_batch(weights[0], "N")


def _previous_replicates(real, fake, divisor, n_boot, seed):
    """The replicates as computed up to commit f59a63b: one replicate at a time, in sample space (SVD) when
    both sets have fewer rows than d, else frechet_distance on the d x d covariances A^T A."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        mu_r, a_r = real.weighted(real.resample(rng), divisor)
        mu_f, a_f = fake.weighted(fake.resample(rng), divisor)
        diff = mu_r - mu_f
        if max(len(a_r), len(a_f)) < a_r.shape[1]:
            nuclear = np.linalg.svd(a_r @ a_f.T, compute_uv=False).sum()
            out[b] = diff @ diff + (a_r * a_r).sum() + (a_f * a_f).sum() - 2 * nuclear
        else:
            s_r, s_f = a_r.T @ a_r, a_f.T @ a_f
            out[b] = frechet_distance(mu_r, (s_r + s_r.T) / 2, mu_f, (s_f + s_f.T) / 2, warn_rank=False)
    return out


def _frame_features(videos, frames, d, seed, shift=0.0):
    """ReLU features of ``frames`` correlated frames per video, 4 dead units (rank < d at any N)."""
    rng = np.random.default_rng(seed)
    per_video = rng.standard_normal((videos, 1, d)) @ (np.geomspace(1, 0.01, d)[:, None] * rng.standard_normal((d, d)))
    x = np.maximum(per_video + 0.3 * rng.standard_normal((videos, frames, d)) + shift, 0.0)
    x[..., :4] = 0.0
    return GroupedRows(x.reshape(-1, d), np.repeat(np.arange(videos), frames))


# Rows per set vs d: 24 x 4 = 96 > 40 (every replicate through the d x d route before), 12 x 1 < 40 (sample
# space before), 10 x 4 around 40 (both). Measured largest relative differences: 7e-14, 6e-16, 3e-9 (the
# previous d x d route square-roots round-off eigenvalues of rank-deficient covariances; the batched one is exact
# there, see test_factor_distance_is_exact_on_rank_deficient_covariances).
@pytest.mark.parametrize("videos,frames", [(24, 4), (12, 1), (10, 4)])
@pytest.mark.parametrize("divisor", ["N", "N-1"])
def test_batched_replicates_equal_the_previous_path(videos, frames, divisor):
    real, fake = _frame_features(videos, frames, 40, 1), _frame_features(videos + 2, frames, 40, 2, shift=0.1)
    previous = _previous_replicates(real, fake, divisor, 60, 9)
    ours = frechet_replicates(real, fake, divisor=divisor, n_boot=60, seed=9)
    np.testing.assert_allclose(ours, previous, rtol=1e-8)
    one_at_a_time = frechet_replicates(real, fake, divisor=divisor, n_boot=60, seed=9, batch_bytes=1)
    np.testing.assert_allclose(one_at_a_time, ours, rtol=1e-13)
    point = float(np.median(previous))
    assert interval(point, ours) == pytest.approx(interval(point, previous), rel=1e-8)


def test_interval_formulas():
    replicates = np.arange(1.0, 102.0)  # 1..101: 2.5% and 97.5% quantiles 3.5 and 98.5, mean 51
    assert interval(40.0, replicates, 0.95, "percentile") == pytest.approx((3.5, 98.5))
    assert interval(40.0, replicates, 0.95, "basic") == pytest.approx((2 * 40 - 98.5, 2 * 40 - 3.5))
    assert interval(40.0, replicates, 0.95, "shifted") == pytest.approx((40 - (98.5 - 51), 40 + (51 - 3.5)))
    with pytest.raises(ValueError, match="method must be one of"):
        interval(1.0, replicates, 0.95, "bca")


def _fid_states(fid, x, y, tmp_path):
    """The FID object's states of two sets, keeping rows (as the harness does with a bootstrap)."""
    real = fid.new_state(rows_path=tmp_path / "real.f16").update(x)
    return real, fid.new_state(rows_path=tmp_path / "fake.f16").update(y)


def test_point_matches_frechet_distance_and_is_reproducible(tmp_path):
    x, y = draw(np.random.default_rng(1), n=200)
    fid = FID(protocol_for("fid", dim=D))
    result = fid.compute(*_fid_states(fid, x, y, tmp_path), n_boot=50, seed=3)
    ci = result["ci"]
    assert result["value"] == pytest.approx(sample_fd(x, y), rel=1e-12)
    assert ci["low"] < result["value"] < ci["high"]
    assert result["n_real"] == result["n_fake"] == 200 and result["n_real_rows"] == 200 and ci["method"] == "shifted"
    assert ci["target"].startswith("expected distance at this N")
    again = fid.compute(*_fid_states(fid, x, y, tmp_path / "again"), n_boot=50, seed=3)
    assert again == result
    assert ci["bootstrap_bias"] > 0  # resampling with replacement adds bias (duplicated videos)


def test_cached_reference_gives_the_same_point_and_interval(tmp_path):
    """A reference state restored from its arrays (the cache entry) scores exactly as the state that wrote it."""
    x, y = draw(np.random.default_rng(2), n=200)
    fid = FID(protocol_for("fid", dim=D))
    real, fake = _fid_states(fid, x, y, tmp_path)
    restored = fid.restore_state(real.to_arrays(), real.videos)
    assert restored.stats.count == 200 and restored.videos == 200
    assert fid.compute(restored, fake, n_boot=40, seed=0) == fid.compute(real, fake, n_boot=40, seed=0)
    with pytest.raises(ValueError, match="divisor must be"):
        FID(protocol_for("fid", dim=D, divisor="1/N")).compute(real, fake)


@pytest.mark.slow
def test_coverage_on_gaussians_with_known_distance():
    """60 repeated draws of N = 500 real and 500 generated 8-d Gaussian vectors, 200 bootstrap replicates each.

    Targets: FD_N = E[FD at N = 500] by Monte Carlo (2000 draws; its bias over FD_inf, about 0.12, is twice
    the 0.064 sd of FD at this N, so the choice of interval matters), and FD_inf in closed form. Measured
    with these seeds: "shifted" covers FD_N 0.98 (slightly conservative: the bootstrap sd is ~15% larger
    than the true sd when the distance is dominated by its bias), "basic" covers FD_inf 0.98, while the
    percentile interval covers FD_N only 0.48 and "shifted" covers FD_inf only 0.65.
    """
    rng = np.random.default_rng(123)
    fd_n = np.mean([sample_fd(*draw(rng)) for _ in range(2000)])
    assert fd_n - FD_INF == pytest.approx(0.12, abs=0.02)
    hits = {"shifted@N": 0, "basic@inf": 0, "percentile@N": 0, "shifted@inf": 0}
    reps = 60
    for k in range(reps):
        x, y = draw(rng)
        point, _ = frechet_point(FeatureStats().update(x), FeatureStats().update(y), "N-1")
        replicates = frechet_replicates(GroupedRows(x, np.arange(N)), GroupedRows(y, np.arange(N)), divisor="N-1",
                                        n_boot=200, seed=k)
        low, high = interval(point, replicates, 0.95, "shifted")
        hits["shifted@N"] += low <= fd_n <= high
        hits["shifted@inf"] += low <= FD_INF <= high
        low, high = interval(point, replicates, 0.95, "basic")
        hits["basic@inf"] += low <= FD_INF <= high
        low, high = interval(point, replicates, 0.95, "percentile")
        hits["percentile@N"] += low <= fd_n <= high
    coverage = {key: value / reps for key, value in hits.items()}
    assert 0.85 <= coverage["shifted@N"] <= 1.0, coverage
    assert 0.85 <= coverage["basic@inf"] <= 1.0, coverage
    assert coverage["percentile@N"] < 0.8, coverage
    assert coverage["shifted@inf"] < 0.85, coverage


def test_bootstrap_mean_of_per_video_scores():
    rng = np.random.default_rng(5)
    scores = rng.normal(30.0, 4.0, 400)
    result = bootstrap_mean(scores, n_boot=4000, seed=0)
    assert result["point"] == pytest.approx(scores.mean())
    half_width = 1.96 * scores.std(ddof=1) / np.sqrt(400)
    assert (result["high"] - result["low"]) / 2 == pytest.approx(half_width, rel=0.1)
    assert result["low"] < scores.mean() < result["high"]
    with pytest.raises(ValueError, match=r"values must be a vector \[N >= 2\]"):
        bootstrap_mean(scores.reshape(20, 20))
