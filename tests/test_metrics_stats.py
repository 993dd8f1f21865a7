"""FeatureStats: streaming = single pass, merging, divisors, numerics with large offsets, persistence, all_reduce."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.metrics.frechet import frechet_distance
from benchmarks.metrics.stats import FeatureStats


def features(n, d, seed, mean=0.0, std=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return std * rng.standard_normal((n, d)) @ mix + mean * rng.uniform(0.5, 1.5, d)


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_single_pass_matches_numpy():
    x = features(700, 10, seed=0)
    stats = FeatureStats().update(x)
    assert stats.count == 700 and stats.dim == 10 and stats.sum_outer.shape == (10, 10)
    np.testing.assert_allclose(stats.mean(), x.mean(0), rtol=0, atol=1e-14)
    assert rel_err(stats.cov("N-1"), np.cov(x, rowvar=False)) < 1e-14
    assert rel_err(stats.cov("N"), np.cov(x, rowvar=False, bias=True)) < 1e-14


@pytest.mark.parametrize("shift", ["first", None], ids=["shifted", "raw"])
def test_merge_of_shards_equals_single_pass(shift):
    x = features(1000, 8, seed=1, mean=3.0)
    whole = FeatureStats(shift=shift).update(x)
    shards = [FeatureStats(shift=shift).update(x[a:b]) for a, b in [(0, 1), (1, 300), (300, 301), (301, 1000)]]
    merged = FeatureStats(shift=shift)
    for shard in shards:
        merged.merge(shard)
    added = shards[0] + shards[1] + shards[2] + shards[3]
    assert shards[0].count == 1  # `+` does not modify its operands
    for combined in (merged, added):
        assert combined.count == 1000
        np.testing.assert_allclose(combined.mean(), whole.mean(), rtol=1e-13)
        assert rel_err(combined.cov(), whole.cov()) < 1e-12


def test_streaming_with_large_mean_offset_is_accurate():
    """Many small batches of features with mean ~100 and std 1: covariance to 1e-10 of numpy.cov. The
    first-batch shift is what makes this hold: raw sums (StyleGAN-V, torchmetrics) lose ~1e-7 at mean 1e4."""
    for mean in (100.0, 1e4):
        x = features(3000, 12, seed=2, mean=mean, std=1.0)
        reference = np.cov(x, rowvar=False)
        shifted, raw = FeatureStats(), FeatureStats(shift=None)
        for start in range(0, 3000, 10):
            shifted.update(x[start:start + 10])
            raw.update(x[start:start + 10])
        assert rel_err(shifted.cov(), reference) < 1e-10
        assert rel_err(shifted.mean(), x.mean(0)) < 1e-13
    assert rel_err(raw.cov(), reference) > 1e-9  # the cancellation the shift avoids (mean 1e4)


def test_merge_across_different_shifts_and_explicit_shift():
    x = features(900, 6, seed=3, mean=50.0)
    a = FeatureStats().update(x[:400])  # shift = mean of x[:400]
    b = FeatureStats(shift=np.full(6, -7.0)).update(x[400:])  # a poor shift: ~60 from the mean
    c = FeatureStats(shift=None).update(x[:10])
    merged = a + b
    assert rel_err(merged.cov(), np.cov(x, rowvar=False)) < 1e-10
    empty_first = FeatureStats().merge(c).update(x[10:])  # adopts c's raw sums, keeps them raw
    assert empty_first.shift is None
    assert rel_err(empty_first.cov(), np.cov(x, rowvar=False)) < 1e-10


def test_torch_update_equals_numpy_update():
    x = features(500, 9, seed=4, mean=2.0).astype(np.float32)
    from_numpy = FeatureStats().update(x)
    from_torch = FeatureStats().update(torch.from_numpy(x))  # float32 in, float64 sums
    np.testing.assert_allclose(from_torch.sum_outer, from_numpy.sum_outer, rtol=1e-12)
    np.testing.assert_allclose(from_torch.cov(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-14)


def test_divisors_and_their_effect_on_fd():
    x, y = features(300, 5, seed=5), features(300, 5, seed=6, mean=0.5)
    sx, sy = FeatureStats().update(x), FeatureStats().update(y)
    n = 300
    np.testing.assert_allclose(sx.cov("N"), sx.cov("N-1") * (n - 1) / n, rtol=1e-14)
    mean_term = float(((sx.mean() - sy.mean()) ** 2).sum())
    fd_n = frechet_distance(sx.mean(), sx.cov("N"), sy.mean(), sy.cov("N"))
    fd_n1 = frechet_distance(sx.mean(), sx.cov("N-1"), sy.mean(), sy.cov("N-1"))
    # every covariance term scales by (N-1)/N (the square-root term too), the mean term does not
    assert fd_n - mean_term == pytest.approx((fd_n1 - mean_term) * (n - 1) / n, rel=1e-10)
    assert fd_n1 - fd_n == pytest.approx((fd_n1 - mean_term) / n, rel=1e-10)


def test_errors_name_the_problem():
    stats = FeatureStats(4)
    with pytest.raises(ValueError, match="mean of an empty FeatureStats"):
        stats.mean()
    with pytest.raises(ValueError, match=r"divisor must be 'N' .* got '1/N'"):
        stats.cov("1/N")
    stats.update(np.ones((1, 4)))
    assert stats.cov("N").shape == (4, 4)
    with pytest.raises(ValueError, match=r"divisor 'N-1' needs at least 2 samples; have 1"):
        stats.cov("N-1")
    with pytest.raises(ValueError, match="features has d = 3 but these statistics have d = 4"):
        stats.update(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"features must be a matrix \[n, d\]"):
        stats.update(np.ones(4))


def test_npz_and_state_dict_round_trip(tmp_path):
    x = features(200, 7, seed=7, mean=10.0)
    stats = FeatureStats().update(x)
    for name in ("real.npz", "real_stats.bin"):  # the suffix does not matter (no '.npz' appended)
        path = tmp_path / name
        stats.to_npz(path)
        loaded = FeatureStats.from_npz(path)
        assert loaded.count == 200 and loaded.dim == 7
        np.testing.assert_array_equal(loaded.sum_outer, stats.sum_outer)
        np.testing.assert_array_equal(loaded.shift, stats.shift)
        np.testing.assert_array_equal(loaded.cov(), stats.cov())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.npz", "real_stats.bin"]  # no temporaries left
    again = FeatureStats.from_state_dict(stats.state_dict()).update(x)
    assert again.count == 400
    np.testing.assert_allclose(again.cov("N"), np.cov(np.vstack([x, x]), rowvar=False, bias=True), rtol=1e-12)
    with pytest.raises(KeyError, match="missing"):
        FeatureStats.from_state_dict({"count": 1})


def test_all_reduce_without_and_with_a_process_group(tmp_path):
    x = features(50, 3, seed=8)
    stats = FeatureStats(3).update(x)
    before = stats.state_dict()
    stats.all_reduce()  # no process group: no-op
    np.testing.assert_array_equal(stats.sum_outer, before["sum_outer"])
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        stats.all_reduce()  # one process: same statistics, re-centred on the common shift
    finally:
        dist.destroy_process_group()
    assert stats.count == 50
    assert rel_err(stats.cov(), np.cov(x, rowvar=False)) < 1e-13


def _two_process_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    x = features(500, 4, seed=9, mean=20.0)
    stats = FeatureStats(4)
    if rank == 1:  # rank 0 sees nothing; rank 1 has its own shift
        stats.update(x[:200]).update(x[200:] + 0.0)
    stats.all_reduce()
    dist.destroy_process_group()
    np.savez(f"{out_dir}/rank{rank}.npz", **stats.state_dict())


@pytest.mark.slow
def test_all_reduce_across_two_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_two_process_worker, args=(str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    x = features(500, 4, seed=9, mean=20.0)
    for rank in (0, 1):
        with np.load(tmp_path / f"rank{rank}.npz") as data:
            stats = FeatureStats.from_state_dict(dict(data))
        assert stats.count == 500
        assert rel_err(stats.cov(), np.cov(x, rowvar=False)) < 1e-12
        np.testing.assert_allclose(stats.mean(), x.mean(0), rtol=1e-13)
