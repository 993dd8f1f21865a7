"""Fréchet distance: parity with pytorch-fid / StyleGAN-V (scipy sqrtm) and torchmetrics, and invariants."""
from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from benchmarks.metrics import FID, FVD, protocol_for
from benchmarks.metrics.frechet import (
    MatrixRoot,
    RankDeficientWarning,
    frechet_distance,
    frechet_distance_from_factors,
    frechet_distances_from_factors,
    matrix_root,
    matrix_sqrt_psd,
    one_thread,
)


def sqrtm_formula(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (= StyleGAN-V's compute_fvd up to the eps retry), written for
    SciPy >= 1.16: sqrtm without the deprecated ``disp`` argument, then the real part."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def svd_formula(x, y):
    """Independent reference for two sample sets with divisor N-1: with S1 = A^T A / c and S2 = B^T B / c
    (A, B centred), tr sqrt(S1 S2) = sum of singular values of A B^T / c. Accurate also when N < d."""
    a, b = x - x.mean(0), y - y.mean(0)
    assert len(x) == len(y)
    c = len(x) - 1
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (a * a).sum() / c + (b * b).sum() / c - 2 * scipy.linalg.svdvals(a @ b.T).sum() / c)


def feature_sets(n, d, seed, offset=0.3):
    """Two correlated, non-commuting feature sets [n, d] with different means and covariances."""
    rng = np.random.default_rng(seed)
    mix1 = rng.standard_normal((d, d)) / np.sqrt(d) * np.linspace(0.2, 2.0, d)
    mix2 = mix1 @ scipy.linalg.expm(0.1 * (lambda m: m - m.T)(rng.standard_normal((d, d))))
    x = rng.standard_normal((n, d)) @ mix1 + 1.0
    y = 1.1 * rng.standard_normal((n, d)) @ mix2 + 1.0 + offset
    return x, y


def gaussian_stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


def fd_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        return frechet_distance(*args, **kwargs)


@pytest.mark.parametrize("n,d", [(500, 64), (600, 160)], ids=["64d", "160d"])
def test_full_rank_matches_sqrtm_formula(n, d):
    x, y = feature_sets(n, d, seed=d)
    stats = (*gaussian_stats(x), *gaussian_stats(y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficientWarning)  # full rank: must not warn
        ours = frechet_distance(*stats)
    assert ours == pytest.approx(sqrtm_formula(*stats), rel=1e-6)
    assert ours == pytest.approx(svd_formula(x, y), rel=1e-9)


@pytest.mark.parametrize("n,d", [(40, 96), (90, 160)], ids=["40x96", "90x160"])
def test_rank_deficient_matches_sqrtm_formula_and_warns(n, d):
    x, y = feature_sets(n, d, seed=n)
    stats = (*gaussian_stats(x), *gaussian_stats(y))
    with pytest.warns(RankDeficientWarning) as record:
        ours = frechet_distance(*stats)
    messages = [str(w.message) for w in record if w.category is RankDeficientWarning]
    assert any(m.startswith("sigma1 is rank-deficient") and f"rank {n - 1} < d = {d}" in m for m in messages)
    assert any(m.startswith("sigma2 is rank-deficient") and f"rank {n - 1} < d = {d}" in m for m in messages)
    assert ours == pytest.approx(sqrtm_formula(*stats), rel=1e-6)
    assert ours == pytest.approx(svd_formula(x, y), rel=1e-7)


def test_only_sigma2_rank_deficient_is_named():
    x, _ = feature_sets(400, 48, seed=1)
    _, y = feature_sets(30, 48, seed=2)
    stats = (*gaussian_stats(x), *gaussian_stats(y))
    with pytest.warns(RankDeficientWarning, match=r"sigma2 is rank-deficient: numerical rank 29 < d = 48") as rec:
        ours = frechet_distance(*stats)
    assert not any("sigma1" in str(w.message) for w in rec)
    assert ours == pytest.approx(sqrtm_formula(*stats), rel=1e-6)


def test_matches_pytorch_fid(monkeypatch):
    from pytorch_fid import fid_score

    x, y = feature_sets(300, 32, seed=3)
    stats = (*gaussian_stats(x), *gaussian_stats(y))
    try:  # SciPy 1.16-1.17 only deprecate sqrtm(..., disp=False); 1.18 removes it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            expected = fid_score.calculate_frechet_distance(*stats)
    except TypeError:
        shim = types.SimpleNamespace(sqrtm=lambda a, disp=True: (scipy.linalg.sqrtm(a), 0.0) if not disp
                                     else scipy.linalg.sqrtm(a))
        monkeypatch.setattr(fid_score, "linalg", shim)
        expected = fid_score.calculate_frechet_distance(*stats)
    assert frechet_distance(*stats) == pytest.approx(float(expected), rel=1e-6)


def test_matches_torchmetrics_compute_fid():
    from torchmetrics.image.fid import _compute_fid

    x, y = feature_sets(300, 32, seed=4)
    stats = (*gaussian_stats(x), *gaussian_stats(y))
    expected = _compute_fid(*(torch.from_numpy(s) for s in stats)).item()
    assert frechet_distance(*stats) == pytest.approx(expected, rel=1e-6)


def test_distance_to_itself_is_zero_and_symmetric():
    x, y = feature_sets(600, 40, seed=5)
    sx, sy = gaussian_stats(x), gaussian_stats(y)
    assert abs(frechet_distance(*sx, *sx)) < 1e-10 * np.trace(sx[1])
    forward, backward = frechet_distance(*sx, *sy), frechet_distance(*sy, *sx)
    assert forward > 0.5
    assert forward == pytest.approx(backward, rel=1e-10)


def test_invariant_to_sample_order_and_feature_permutation():
    x, y = feature_sets(500, 24, seed=6)
    rng = np.random.default_rng(0)
    base = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    shuffled = frechet_distance(*gaussian_stats(x[rng.permutation(500)]), *gaussian_stats(y[rng.permutation(500)]))
    perm = rng.permutation(24)
    permuted = frechet_distance(*gaussian_stats(x[:, perm]), *gaussian_stats(y[:, perm]))
    assert shuffled == pytest.approx(base, rel=1e-10)
    assert permuted == pytest.approx(base, rel=1e-10)


def test_closed_form_gaussians_diagonal_and_rotated():
    d = 10
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))  # a common rotation keeps the closed form
    rotated = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-10)


def test_torch_and_numpy_inputs_agree():
    x, y = feature_sets(300, 16, seed=8)
    stats = (*gaussian_stats(x), *gaussian_stats(y))
    expected = frechet_distance(*stats)
    assert frechet_distance(*(torch.from_numpy(s) for s in stats)) == expected
    as_float32 = [torch.from_numpy(s).float() for s in stats]  # computed in float64 from the float32 values
    assert frechet_distance(*as_float32) == frechet_distance(*(t.double().numpy() for t in as_float32))
    assert frechet_distance(*as_float32) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n", [400, 30], ids=["full-rank", "rank-deficient"])
def test_cached_reference_root(n):
    x, y = feature_sets(n, 32, seed=9)
    (mu1, s1), (mu2, s2) = gaussian_stats(x), gaussian_stats(y)
    cold = fd_quiet(mu1, s1, mu2, s2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        root = matrix_root(s1)
    assert isinstance(root, MatrixRoot) and root.method == ("cholesky" if n > 32 else "eigh")
    assert root.rank == min(n - 1, 32)
    np.testing.assert_allclose(root.factor @ root.factor.T, s1, atol=1e-12 * np.abs(s1).max())
    assert fd_quiet(mu1, s1, mu2, s2, root1=root) == cold
    eigh_root = matrix_root(s1, method="eigh") if n > 32 else root
    assert fd_quiet(mu1, s1, mu2, s2, root1=eigh_root) == pytest.approx(cold, rel=1e-9)
    # a symmetric root keeps the round-off null space of a rank-deficient sigma1: agreement to ~1e-8
    assert fd_quiet(mu1, s1, mu2, s2, root1=matrix_sqrt_psd(s1)) == pytest.approx(cold, rel=1e-7)


def test_matrix_sqrt_psd_squares_back_and_clips():
    x, _ = feature_sets(20, 12, seed=10)  # rank 19 > 12: full rank; then a rank-deficient one
    for sigma in (np.cov(x, rowvar=False), np.cov(x[:5], rowvar=False)):
        root = matrix_sqrt_psd(sigma)
        np.testing.assert_allclose(root, root.T, atol=1e-14)
        np.testing.assert_allclose(root @ root, sigma, atol=1e-12 * np.abs(sigma).max())
    with pytest.raises(np.linalg.LinAlgError, match="not numerically positive definite"):
        matrix_root(np.cov(x[:5], rowvar=False), method="cholesky")


def test_clear_errors_for_bad_shapes_and_values():
    mu, sigma = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match=r"mu1 and mu2 .* got mu1 \(4,\), mu2 \(3,\)"):
        frechet_distance(mu, sigma, np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match=r"sigma2 has shape \(3, 3\) but the means have d = 4"):
        frechet_distance(mu, sigma, mu, np.eye(3))
    with pytest.raises(ValueError, match=r"sigma1 must be a square covariance matrix \[d, d\]; got shape \(4, 3\)"):
        frechet_distance(mu, np.ones((4, 3)), mu, sigma)
    with pytest.raises(ValueError, match="sigma2 is not symmetric"):
        frechet_distance(mu, sigma, mu, np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="sigma1 contains NaN"):
        frechet_distance(mu, np.full((4, 4), np.nan), mu, sigma)
    with pytest.raises(ValueError, match="root1 is a factor of a 3-d covariance but sigma1 is 4 x 4"):
        frechet_distance(mu, sigma, mu, sigma, root1=np.eye(3))
    with pytest.raises(ValueError, match="root1 does not belong to sigma1"):
        frechet_distance(mu, sigma, mu, sigma, root1=2 * np.eye(4))


def test_fid_object_streams_and_keeps_its_reference():
    """The FID object the harness runs: states streamed batch by batch (numpy or torch) give the whole-set
    distance; a reference state keeps its covariance factor while its statistics do not change."""
    x, y = feature_sets(600, 20, seed=11)
    fid = FID(protocol_for("fid", dim=20))
    real, fake = fid.new_state(), fid.new_state()
    for start in range(0, 600, 128):
        real.update(x[start:start + 128])
        fake.update(torch.from_numpy(y[start:start + 128]))
    expected = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert fid.compute(real, fake)["value"] == pytest.approx(expected, rel=1e-10)
    root = real.root()
    other = fid.new_state().update(x[:300])  # another generated set against the same reference
    assert fid.compute(real, other)["value"] == pytest.approx(
        frechet_distance(*gaussian_stats(x), *gaussian_stats(x[:300])), rel=1e-10)
    assert real.root() is root
    real.update(y[:5])
    assert real.root() is not root  # new statistics, new factor
    fvd = FVD(protocol_for("fvd", dim=20))  # StyleGAN-V's divisor N, reference restored from a cache entry
    reference = fvd.new_state().update(x)
    reference = fvd.restore_state(reference.to_arrays(), reference.videos)
    s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    assert fvd.compute(reference, fvd.new_state().update(y))["value"] == pytest.approx(
        sqrtm_formula(x.mean(0), s1, y.mean(0), s2), rel=1e-9)


def test_merged_states_equal_the_whole_set(tmp_path):
    """Shards merged (statistics, video counts, rows) score exactly as the whole set scored at once."""
    x, y = feature_sets(90, 6, seed=4)
    fid = FID(protocol_for("fid", dim=6))
    positions = np.repeat(np.arange(30), 3)  # 30 videos of 3 frames
    whole = fid.new_state(rows_path=tmp_path / "whole.f16").update(x, positions)
    merged = fid.new_state(rows_path=tmp_path / "merged.f16")
    for a, b in [(0, 30), (30, 33), (33, 90)]:  # shards of whole videos, as processes see them
        shard = fid.new_state(rows_path=tmp_path / f"shard{a}.f16").update(x[a:b], positions[a:b])
        merged.merge(shard)
    assert merged.stats.count == 90 and merged.videos == whole.videos == 30
    fake = fid.new_state(rows_path=tmp_path / "fake.f16").update(y, positions)
    one, two = fid.compute(whole, fake, n_boot=20, seed=1), fid.compute(merged, fake, n_boot=20, seed=1)
    assert two["value"] == pytest.approx(one["value"], rel=1e-12)
    assert (two["ci"]["low"], two["ci"]["high"]) == pytest.approx((one["ci"]["low"], one["ci"]["high"]), rel=1e-9)
    with pytest.raises(ValueError, match="without rows"):
        merged.merge(fid.new_state().update(y))


# -- the bootstrap's batched distance from row factors -----------------------------------------------------


def _mp_factor_distance(mu1, a1, mu2, a2):
    """FD from factors in 50-digit arithmetic: the nuclear norm of A1 A2^T by mpmath's SVD (the reference)."""
    import mpmath

    with mpmath.workdps(50):
        m1, m2 = mpmath.matrix(a1.tolist()), mpmath.matrix(a2.tolist())
        singular = mpmath.svd_r(m1 * m2.T, compute_uv=False)
        diff = mpmath.matrix((mu1 - mu2).tolist())
        value = (sum(x * x for x in diff) + sum(x * x for x in m1) + sum(x * x for x in m2)
                 - 2 * sum(singular[i] for i in range(singular.rows)))
        return float(value)


@pytest.mark.parametrize("m1,m2,d", [(7, 9, 12), (30, 18, 12), (30, 40, 12)], ids=["m<d", "mixed", "m>d"])
def test_factor_distance_is_exact_on_rank_deficient_covariances(m1, m2, d):
    """Rows with 3 dead units (rank < d whatever m is): the batched distance agrees with a 50-digit reference
    to 1e-13 relative, and with the d x d eigenvalue route (frechet_distance of A^T A) to its round-off."""
    rng = np.random.default_rng(m1 + m2)
    a1, a2 = rng.standard_normal((m1, d)), 1.3 * rng.standard_normal((m2, d)) @ rng.standard_normal((d, d)) / 3
    a1[:, :3] = a2[:, :3] = 0.0
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = _mp_factor_distance(mu1, a1, mu2, a2)
    assert frechet_distance_from_factors(mu1, a1, mu2, a2) == pytest.approx(exact, rel=1e-13)
    assert fd_quiet(mu1, a1.T @ a1, mu2, a2.T @ a2) == pytest.approx(exact, rel=1e-7)
    batch = frechet_distances_from_factors(np.stack([mu1, mu2]), np.stack([a1, a1]), np.stack([mu2, mu1]),
                                           np.stack([a2, a2]))
    assert batch == pytest.approx([exact, exact], rel=1e-13)  # |mu1 - mu2| is symmetric


def test_factor_distance_many_rows_cholesky_route_and_its_fallback():
    """Above 2d rows a positive definite A^T A is reduced by Cholesky; in the same batch a rank-deficient one
    (3 dead units) falls back to QR. Both agree with the 50-digit reference."""
    rng = np.random.default_rng(11)
    d = 10
    full = rng.standard_normal((2, 35, d)) @ rng.standard_normal((d, d))
    dead = full.copy()
    dead[:, :, :3] = 0.0
    mu = rng.standard_normal((2, d))
    exact = [_mp_factor_distance(mu[0], a[0], mu[1], a[1]) for a in (full, dead)]
    batch = frechet_distances_from_factors(np.stack([mu[0], mu[0]]), np.stack([full[0], dead[0]]),
                                           np.stack([mu[1], mu[1]]), np.stack([full[1], dead[1]]))
    assert batch == pytest.approx(exact, rel=1e-12)


def test_factor_distance_zero_rows_add_nothing_and_torch_inputs():
    x, y = feature_sets(40, 16, 7)
    a1, a2 = (x - x.mean(0)) / np.sqrt(39), (y - y.mean(0)) / np.sqrt(39)
    expected = svd_formula(x, y)
    padded = np.concatenate([a1, np.zeros((5, 16))])
    assert frechet_distance_from_factors(x.mean(0), padded, y.mean(0), a2) == pytest.approx(expected, rel=1e-12)
    as_torch = [torch.from_numpy(v) for v in (x.mean(0)[None], a1[None], y.mean(0)[None], a2[None])]
    assert frechet_distances_from_factors(*as_torch)[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"a1 must have 3 dimensions \(\[B, m, d\]\); got shape \(40, 16\)"):
        frechet_distances_from_factors(x.mean(0)[None], a1, y.mean(0)[None], a2[None])
    with pytest.raises(ValueError, match=r"a2 has shape \(1, 40, 15\) but mu1 is \[B = 1, d = 16\]"):
        frechet_distances_from_factors(x.mean(0)[None], a1[None], y.mean(0)[None], a2[None, :, :15])


def test_one_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
