"""KID: parity with torchmetrics (its poly_mmd and KernelInceptionDistance on the same subsets), invariants."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from benchmarks.metrics.mmd import kid, kid_per_subset, kid_subset_indices


def feature_sets(n_real, n_fake, d, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) * 1.2 + offset


def stylegan_kid_one_subset(x, y):
    """StyleGAN-V / clean-fid's per-subset expression (kernel (x.y/d + 1)^3), written out independently."""
    m, d = x.shape
    a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
    b = (x @ y.T / d + 1) ** 3
    return ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m


def test_full_set_subsets_match_torchmetrics_poly_mmd():
    from torchmetrics.image.kid import poly_mmd

    x, y = feature_sets(120, 120, 16, seed=0, offset=0.3)
    expected = poly_mmd(torch.from_numpy(x), torch.from_numpy(y)).item()
    mean, std = kid(x, y, subsets=4, subset_size=120)  # every subset is the whole set, reordered
    assert mean == pytest.approx(expected, rel=1e-10)
    assert std < 1e-12 * abs(mean)
    assert mean == pytest.approx(stylegan_kid_one_subset(x, y), rel=1e-10)
    custom = kid(x, y, subsets=1, subset_size=120, degree=2, gamma=0.5, coef0=2.0)[0]
    assert custom == pytest.approx(poly_mmd(torch.from_numpy(x), torch.from_numpy(y), 2, 0.5, 2.0).item(), rel=1e-10)


def test_matches_torchmetrics_metric_on_its_own_subsets():
    from torchmetrics.image.kid import KernelInceptionDistance

    x, y = feature_sets(80, 90, 12, seed=1, offset=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
        metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=7, subset_size=50)
    metric.update(torch.from_numpy(x), real=True)
    metric.update(torch.from_numpy(y), real=False)
    torch.manual_seed(123)
    tm_mean, tm_std = (v.item() for v in metric.compute())
    torch.manual_seed(123)  # replay torchmetrics' draws: per subset, randperm(real) then randperm(fake)
    subsets = [(torch.randperm(80)[:50].numpy(), torch.randperm(90)[:50].numpy()) for _ in range(7)]
    values = kid_per_subset(x, y, subsets)
    assert values.mean() == pytest.approx(tm_mean, rel=1e-10)
    assert values.std() == pytest.approx(tm_std, rel=1e-8)  # population std, as torchmetrics


def test_gram_and_per_subset_paths_agree_and_seed_is_reproducible():
    x, y = feature_sets(150, 130, 8, seed=2, offset=0.5)
    subsets = kid_subset_indices(150, 130, subsets=5, subset_size=60, seed=4)
    with_gram = kid_per_subset(x, y, subsets)
    without = kid_per_subset(x, y, subsets, max_gram_bytes=0)
    np.testing.assert_allclose(with_gram, without, rtol=1e-10)
    np.testing.assert_allclose(with_gram, [stylegan_kid_one_subset(x[i], y[j]) for i, j in subsets], rtol=1e-10)
    assert kid(x, y, subsets=5, subset_size=60, seed=4) == kid(x, y, subsets=5, subset_size=60, seed=4)
    assert kid(x, y, subsets=5, subset_size=60, seed=4) != kid(x, y, subsets=5, subset_size=60, seed=5)


def test_subsets_drawn_without_replacement_and_shrink_to_smaller_set():
    subsets = kid_subset_indices(40, 30, subsets=3, subset_size=1000, seed=0)
    for real_rows, fake_rows in subsets:
        assert len(real_rows) == len(fake_rows) == 30
        assert len(set(real_rows)) == 30 and len(set(fake_rows)) == 30 and real_rows.max() < 40


def test_same_distribution_near_zero_and_shift_detected():
    x, y = feature_sets(400, 400, 10, seed=3)
    same = kid(x, np.random.default_rng(9).standard_normal((400, 10)), subsets=20, subset_size=200)[0]
    shifted = kid(x, y + 1.0, subsets=20, subset_size=200)[0]
    assert abs(same) < 0.01
    assert shifted > 0.3


def test_torch_inputs_and_errors():
    x, y = feature_sets(50, 50, 6, seed=4)
    assert kid(torch.from_numpy(x).float(), torch.from_numpy(y).float(), subsets=3, subset_size=20) == pytest.approx(
        kid(x.astype(np.float32), y.astype(np.float32), subsets=3, subset_size=20), rel=1e-12)
    with pytest.raises(ValueError, match="differ in d"):
        kid(x, y[:, :5])
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid(x[:1], y)
    with pytest.raises(ValueError, match=r"real_feats must be a feature matrix \[n, d\]"):
        kid(x[0], y)
