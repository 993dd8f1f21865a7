"""FVMD: parity of the motion features and the distance with the ``fvmd`` package (1.0.0), the Lucas-Kanade tracker,
and the metric through ``benchmarks.evaluate``.

The ``fvmd`` package cannot be a test dependency: it pins scipy 1.10.1, opencv-python 4.8.0.76, scikit-learn
1.3.0 and nine more packages exactly, and its ``__init__`` imports the PIPs++ tracker (tensorboardX, fire,
...). So its formulas are re-implemented here, line for line and loop for loop, from its code
(``fvmd/extract_motion_features.py``: ``cut_subcube``, ``count_subcube_hist``, ``calc_hist``;
``fvmd/frechet_distance.py``: ``calculate_activation_statistics``, ``calculate_frechet_distance`` with scipy's
``sqrtm``; ``fvmd/keypoint_tracking.py``: ``calc_velocity``, ``calc_acceleration``; ``fvmd/fvmd.py``: the
velocity and acceleration histograms concatenated), independently of the vectorised code under test.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

from benchmarks.detectors.tracker import LKTracker, grid_points, load_lk_tracker
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics import build, get
from benchmarks.metrics import fvmd as F
from benchmarks.metrics.fvmd import FVMDProtocol, fvmd_distance, motion_features, motion_fields, motion_histograms

from eval_sets import clip_frames, make_folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


# --- the fvmd package's formulas, transcribed -----------------------------------------------------------------

def package_calc_velocity(trajs):
    b, s, n, _ = trajs.shape
    return np.concatenate([np.zeros((b, 1, n, 2)), trajs[:, 1:] - trajs[:, :-1]], axis=1)


def package_calc_acceleration(velocity):
    b, s, n, _ = velocity.shape
    return np.concatenate([np.zeros((b, 2, n, 2)), velocity[:, 2:] - velocity[:, 1:-1]], axis=1)


def package_cut_subcube(vectors, cell_size=5, cube_frames=4):
    b, s, h, w, _ = vectors.shape
    mh, mw, ms = h // cell_size, w // cell_size, s // cube_frames
    vectors = vectors[:, :ms * cube_frames, :mh * cell_size, :mw * cell_size, :]
    vectors = vectors.reshape(b, ms, cube_frames, mh, cell_size, mw, cell_size, 2)
    vectors = vectors.transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return vectors.reshape(-1, cube_frames, cell_size, cell_size, 2), ms, mh, mw


def package_count_subcube_hist(cell, angle_bins=8, magnitude_bins=256):
    hist = np.zeros(angle_bins)
    s, h, w, _ = cell.shape
    angles = np.clip((np.arctan2(cell[..., 0], cell[..., 1]) + np.pi) // (2 * np.pi / angle_bins), 0, angle_bins - 1)
    magnitude = np.log2(np.clip(np.linalg.norm(cell, axis=3), 0, magnitude_bins - 1) + 1)
    magnitude = np.ceil(np.clip(magnitude, 0, int(np.log2(magnitude_bins)))) / np.log2(magnitude_bins)
    for t in range(s):
        for i in range(h):
            for j in range(w):
                hist[int(angles[t, i, j])] += magnitude[t, i, j]
    return hist


def package_calc_hist(vectors, cell_size=5, angle_bins=8, cube_frames=4):
    b, s, n, _ = vectors.shape
    side = np.sqrt(n).round().astype(np.int32)
    cubes, ms, mh, mw = package_cut_subcube(vectors.reshape(b, s, side, side, 2), cell_size, cube_frames)
    histos = np.stack([package_count_subcube_hist(cube, angle_bins) for cube in cubes])
    return histos.reshape(b, ms, mh, mw, angle_bins)


def package_frechet(mu1, sigma1, mu2, sigma2, eps=1e-5):
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def package_fvmd(features_gt, features_gen):
    """calculate_fd_given_vectors: mean and np.cov (N-1) of each set, then the regularised distance."""
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (features_gt, features_gen)]
    return package_frechet(*stats[0], *stats[1])


def random_trajectories(b, seed, speed=3.0):
    """float [b, 16, 400, 2]: random walks whose steps span 0 to ~300 px (the magnitude clip at 255 is hit)."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((b, 16, 400, 2)) * speed * rng.lognormal(0, 1.5, (b, 16, 400, 1))
    return 128 + np.cumsum(steps, axis=1)


# --- parity --------------------------------------------------------------------------------------------------

def test_velocity_and_acceleration_follow_the_package_definitions():
    trajs = random_trajectories(3, seed=0)
    velocity, acceleration = motion_fields(trajs)
    np.testing.assert_array_equal(velocity, package_calc_velocity(trajs))
    np.testing.assert_array_equal(acceleration, package_calc_acceleration(package_calc_velocity(trajs)))
    assert not acceleration[:, :2].any() and not velocity[:, 0].any()


def test_motion_histograms_equal_calc_hist():
    trajs = random_trajectories(5, seed=1)
    velocity, acceleration = motion_fields(trajs)
    zeros_and_huge = velocity.copy()
    zeros_and_huge[0, 3:9] = 0.0  # angle atan2(0, 0) = 0 -> bin 4, weight 0
    zeros_and_huge[1, 5] = 1e4  # magnitude clipped at 255 -> weight 1
    for field in (velocity, acceleration, zeros_and_huge):
        ours = motion_histograms(field)
        assert ours.shape == (5, 4, 4, 4, 8)
        np.testing.assert_allclose(ours, package_calc_hist(field), rtol=0, atol=1e-12)
    v_hist, a_hist = package_calc_hist(velocity), package_calc_hist(acceleration)
    expected = np.concatenate([v_hist.reshape(5, -1), a_hist.reshape(5, -1)], axis=1)
    np.testing.assert_allclose(motion_features(velocity, acceleration), expected, rtol=0, atol=1e-12)
    assert motion_histograms(zeros_and_huge)[1].sum() > 0 and expected.shape == (5, 1024)


def test_histogram_weights_do_not_see_a_speed_change_below_one_pixel():
    """The package's magnitude weight ceil(log2(1 + |v|)) / 8 is 1/8 for every 0 < |v| <= 1 px (at 256 px): halving
    such velocities (a 2x slow-down) leaves the histograms unchanged; only vectors above 1 px carry speed. This is
    why FVMD barely sees slow motion on OphSim's 16-frame clips, whose median velocity is about 0.6 px."""
    g = np.random.default_rng(3)
    angle = g.uniform(-np.pi, np.pi, (2, 16, 400))
    for speed, changed in ((g.uniform(0.05, 1.0, (2, 16, 400)), False), (g.uniform(2.0, 6.0, (2, 16, 400)), True)):
        field = np.stack([speed * np.cos(angle), speed * np.sin(angle)], axis=-1)
        full, half = motion_histograms(field), motion_histograms(field / 2)
        assert np.allclose(full, half) is not changed
        np.testing.assert_allclose(full, package_calc_hist(field), rtol=0, atol=1e-12)
    slow = np.stack([0.4 * np.cos(angle), 0.4 * np.sin(angle)], axis=-1)
    assert motion_histograms(slow).sum() == pytest.approx(2 * 16 * 400 / 8)  # every vector weighs 1/8


def test_distance_equals_the_packages_regularised_frechet_distance():
    """d = 128 slices of real motion features (the formula does not depend on d; the full 1024-d case is the
    slow test below): rank-deficient sets (N < d), as FVMD on small test sets is."""
    real = motion_features(*motion_fields(random_trajectories(40, seed=2)))[:, 300:428]
    fake = motion_features(*motion_fields(random_trajectories(30, seed=3, speed=5.0)))[:, 300:428]
    expected = package_fvmd(real, fake)
    ours = fvmd_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert expected > 1.0


@pytest.mark.slow
def test_full_pipeline_distance_equals_the_package_at_1024_dimensions():
    real = motion_features(*motion_fields(random_trajectories(24, seed=4)))
    fake = motion_features(*motion_fields(random_trajectories(24, seed=5, speed=4.0)))
    expected = package_fvmd(real, fake)
    ours = fvmd_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_distance_from_row_factors_equals_the_distance_of_their_covariances():
    """The bootstrap's sample-space path (m1 + m2 < d rows) against the d x d formula, duplicated rows included."""
    rng = np.random.default_rng(9)
    a1, a2 = rng.standard_normal((7, 96)), rng.standard_normal((9, 96)) * 2
    a1[3] = a1[1]
    mu1, mu2 = rng.standard_normal(96), rng.standard_normal(96)
    expected = fvmd_distance(mu1, a1.T @ a1, mu2, a2.T @ a2)
    ours = F.fvmd_distance_from_factors(mu1, a1, mu2, a2)
    assert ours == pytest.approx(expected, rel=1e-9)
    assert ours == pytest.approx(package_frechet(mu1, a1.T @ a1, mu2, a2.T @ a2), rel=1e-6)


def test_self_distance_is_minus_two_d_eps_as_in_the_package():
    """The package's eps enters the square root but not the traces: a set against itself scores -2 d eps."""
    features = motion_features(*motion_fields(random_trajectories(20, seed=6)))[:, :64]
    mu, sigma = features.mean(0), np.cov(features, rowvar=False)
    assert fvmd_distance(mu, sigma, mu, sigma) == pytest.approx(-2 * 64 * 1e-5, abs=1e-9)


# --- the tracker ---------------------------------------------------------------------------------------------

def texture(size=256, seed=0):
    """uint8 [size + 64, size + 64]: a smooth random texture (corners everywhere)."""
    coarse = np.random.default_rng(seed).uniform(0, 255, ((size + 64) // 8, (size + 64) // 8))
    return np.kron(coarse, np.ones((8, 8))).astype(np.uint8)


def test_lk_tracker_recovers_a_known_translation_and_is_deterministic():
    big = texture()
    frames = np.stack([big[32 - 2 * t:288 - 2 * t, 32 - t:288 - t] for t in range(16)])  # content moves (+1, +2)
    tracker = LKTracker()
    trajectories, lost = tracker(frames)
    assert trajectories.shape == (16, 400, 2) and lost < 0.2
    steps = np.diff(trajectories, axis=0)[:, trajectories[-1, :, 0] < 240]
    assert np.median(steps[..., 0]) == pytest.approx(1.0, abs=0.05)
    assert np.median(steps[..., 1]) == pytest.approx(2.0, abs=0.05)
    again, _ = LKTracker()(frames)
    assert np.array_equal(again, trajectories)


def test_start_points_are_corners_of_their_own_grid_cells():
    first = texture(seed=1)[:256, :256]
    points, grid = LKTracker().start_points(first), grid_points((256, 256), 20, 8.0)
    step = 240 / 19
    assert np.abs(points - grid).max() <= step / 2 + 1e-4  # each point stays in its own cell
    assert (np.abs(points - grid).sum(1) > 0).mean() > 0.5  # most cells found a corner
    flat = np.full((256, 256), 90, np.uint8)
    np.testing.assert_array_equal(LKTracker().start_points(flat), grid)  # no corners: the package's grid


def test_tracker_identity_is_recorded_and_it_takes_no_weight_file(tmp_path):
    tracker, info = load_lk_tracker("random-init", "fvmd/opencv-lk")
    assert info.detector == "opencv-lk" and info.identifier.startswith("opencv-lk:opencv=")
    assert info.sha256 == load_lk_tracker("pretrained", "fvmd/opencv-lk")[1].sha256 and not info.comparable
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    with pytest.raises(ValueError, match="has no weights"):
        load_lk_tracker(str(weights), "fvmd/opencv-lk")


# --- the metric ----------------------------------------------------------------------------------------------

def test_protocol_windows_and_worker_input():
    protocol = FVMDProtocol()
    np.testing.assert_array_equal(protocol.frame_indices(20, "fake", 0, "a"), np.arange(20))
    assert protocol.windows_in(20) == 5 and FVMDProtocol(window_stride=4).windows_in(20) == 2
    np.testing.assert_array_equal(FVMDProtocol(window_stride=4).frame_indices(21, "real", 0, "a"), np.arange(20))
    with pytest.raises(ValueError, match="needs 16"):
        protocol.frame_indices(15, "real", 0, "a")
    with pytest.raises(ValueError, match="layout is the package's"):
        FVMDProtocol(angle_bins=16)
    x = protocol.prepare(clip_frames(16, (64, 48), seed=0))
    assert tuple(x.shape) == (16, 256, 256) and str(x.dtype) == "torch.uint8"


def shuffled(folder, out, seed=0):
    """Each video of ``folder`` with its frames in a seeded random order (a temporal damage, same content)."""
    from ophora.data.video import read_video, write_video

    rng = np.random.default_rng(seed)
    for path in sorted(folder.glob("*.mp4")):
        frames = read_video(path)
        write_video(out / path.name, frames[rng.permutation(len(frames))], fps=8)
    return out


@pytest.mark.slow
def test_evaluate_scores_fvmd_and_frame_shuffling_raises_it(tmp_path):
    real, other = tmp_path / "real", tmp_path / "other"
    make_folder(real, 6, 18, size=(48, 48), seed=0)
    make_folder(other, 6, 18, size=(48, 48), seed=5)
    damaged = shuffled(other, tmp_path / "shuffled")
    scores = {}
    for name, fake in (("other", other), ("shuffled", damaged)):
        out = tmp_path / f"{name}.json"
        cfg = EvalConfig(real=str(real), fake=str(fake), metrics=("fvmd", "kvmd"), bootstrap=10, workers=0,
                         out=str(out), progress=False)
        evaluate(cfg)
        scores[name] = json.loads(out.read_text())
    clean, bad = scores["other"]["metrics"]["fvmd"], scores["shuffled"]["metrics"]["fvmd"]
    assert clean["n_real"] == 6 and clean["n_real_rows"] == 18 and clean["n_fake_rows"] == 18  # 3 windows each
    assert bad["value"] > 3 * clean["value"] and bad["value"] > clean["ci"]["high"]
    assert bad["velocity"] > clean["velocity"] and bad["acceleration"] > clean["acceleration"]
    assert scores["shuffled"]["metrics"]["fvmd"]["reference_cache"]["hit"] is True  # motion features cached
    assert scores["other"]["detectors"]["fvmd"]["detector"] == "opencv-lk"
    kernel_clean, kernel_bad = scores["other"]["metrics"]["kvmd"], scores["shuffled"]["metrics"]["kvmd"]
    assert kernel_bad["value"] > kernel_clean["ci"]["high"] and kernel_clean["n_real_rows"] == 18  # on FVMD's rows


def test_state_merges_and_restores_from_cached_arrays():
    metric = build("fvmd", EvalConfig(real="", fake=""))
    assert type(metric) is get("fvmd") and metric.protocol.name == "fvmd/opencv-lk"
    rows = motion_features(*motion_fields(random_trajectories(8, seed=7)))
    whole, a, b = (metric.new_state() for _ in range(3))
    whole.update(rows, np.repeat(np.arange(4), 2))
    a.update(rows[:4], np.repeat([0, 1], 2))
    b.update(rows[4:], np.repeat([2, 3], 2))
    merged = a.merge(b)
    np.testing.assert_allclose(merged.stats.cov("N-1"), whole.stats.cov("N-1"), atol=1e-10)
    restored = metric.restore_state(whole.to_arrays(), videos=4)
    assert restored.videos == merged.videos == 4 and restored.stats.count == 8
    np.testing.assert_array_equal(restored.stats.cov("N-1"), whole.stats.cov("N-1"))
    np.testing.assert_array_equal(restored.stats.mean(), whole.stats.mean())


@pytest.mark.parametrize("m1, m2", [(216, 24), (24, 24), (30, 1), (1, 1)])
def test_the_bootstrap_route_from_row_factors_equals_the_distance_of_full_covariances(m1, m2):
    """fvmd_distance_from_factors (every bootstrap replicate: fewer rows than the 1024 dimensions) equals the
    package's regularised distance computed on the d x d covariances, whatever the ranks."""
    rng = np.random.default_rng(m1 + m2)
    x1, x2 = rng.gamma(1.0, 1.0, (m1, 1024)) / 15, rng.gamma(1.0, 1.0, (m2, 1024)) / 5
    a1 = (x1 - x1.mean(0)) / np.sqrt(max(m1 - 1, 1))
    a2 = (x2 - x2.mean(0)) / np.sqrt(max(m2 - 1, 1))
    exact = fvmd_distance(x1.mean(0), a1.T @ a1, x2.mean(0), a2.T @ a2)
    assert F.fvmd_distance_from_factors(x1.mean(0), a1, x2.mean(0), a2) == pytest.approx(exact, rel=1e-9)
