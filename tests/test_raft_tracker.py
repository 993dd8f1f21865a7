"""The learned point tracker of FVMD (benchmarks/detectors/raft_tracker.py): torchvision's RAFT flow, chained.

Chaining is checked on injected flows with analytic trajectories (translation, rotation, points leaving the
frame, the crop of padded frames); preprocessing against torchvision's own transform; the loader on state dicts
saved from torchvision's model (the published files are a download, so a seeded file stands in, registered
under the real entry's name with its own digest); end to end with a seeded raft_small on a tiny clip.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from benchmarks.detectors import CustomWeights, state_dict_sha256
from benchmarks.detectors.raft_tracker import (
    ARCHS,
    MIN_SIZE,
    RaftConfig,
    RaftTracker,
    bilinear_sample,
    build_raft,
    chain_flows,
    load_raft_state,
    load_raft_tracker,
    raft_input,
)
from benchmarks.detectors.tracker import grid_points
from ophora import weights as W

SMALL = RaftConfig(arch="raft_small")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)


def _constant(d: tuple[float, float], steps: int, h: int, w: int) -> torch.Tensor:
    flows = torch.empty(steps, 2, h, w, dtype=torch.float64)
    flows[:, 0], flows[:, 1] = d
    return flows


def _rotation(theta: float, centre: tuple[float, float], steps: int, h: int, w: int) -> torch.Tensor:
    """The flow of a rotation by ``theta`` about ``centre`` at every pixel: R (x - c) + c - x."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    dx, dy = xx - centre[0], yy - centre[1]
    c, s = np.cos(theta), np.sin(theta)
    field = torch.stack([c * dx - s * dy - dx, s * dx + c * dy - dy])
    return field.expand(steps, -1, -1, -1)


# ---------------------------------------------------------------------------------------------------------
# chaining on known flows


def test_constant_translation_gives_straight_trajectories():
    points = grid_points((64, 64), 5, 20.0)  # x, y in [20, 44]
    d = (1.25, -0.75)
    trajectories, alive = chain_flows(points, _constant(d, 15, 64, 64))
    expected = points[None].astype(np.float64) + np.arange(16)[:, None, None] * np.array(d)
    assert trajectories.shape == (16, 25, 2) and alive.all()
    np.testing.assert_allclose(trajectories, expected, atol=1e-4, rtol=0)


def test_rotation_gives_circular_trajectories():
    theta, centre = 0.05, (31.5, 30.0)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    radii = np.array([3.0, 9.5, 17.25, 25.0])
    offsets = np.array([(r * np.cos(a), r * np.sin(a)) for r in radii for a in angles])
    points = offsets + centre  # all within 25.0 px of the centre: they stay inside the 64 x 64 frame
    trajectories, alive = chain_flows(points, _rotation(theta, centre, 15, 64, 64))
    t = np.arange(16)[:, None]
    angle, radius = np.arctan2(offsets[:, 1], offsets[:, 0])[None] + theta * t, np.hypot(*offsets.T)[None]
    expected = np.stack([centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle)], axis=-1)
    assert alive.all()
    np.testing.assert_allclose(trajectories, expected, atol=1e-4, rtol=0)
    assert np.abs(trajectories[-1] - trajectories[0]).max() > 15  # the motion is large: the check is not vacuous


def test_points_leaving_the_frame_are_held_at_their_last_position():
    points = np.array([[2.0, 10.0], [30.0, 10.0], [50.0, 20.0], [63.0, 5.0], [10.0, 60.0]])
    d = (5.0, 1.5)
    trajectories, alive = chain_flows(points, _constant(d, 15, 64, 64))
    expected = np.empty((16, 5, 2))
    for i, p in enumerate(points):
        last = 0  # the last step whose position is inside [0, 63] x [0, 63]
        while last < 15 and (p + (last + 1) * np.array(d) <= 63).all():
            last += 1
        for t in range(16):
            expected[t, i] = p + min(t, last) * np.array(d)
    np.testing.assert_allclose(trajectories, expected, atol=1e-9, rtol=0)
    assert alive.tolist() == [False, False, False, False, False]
    assert [int(np.argmax((np.diff(trajectories[:, i], axis=0) == 0).all(1))) for i in range(5)] == [12, 6, 2, 0, 2]
    stay, alive = chain_flows(points[:2], _constant((0.5, 0.0), 15, 64, 64))
    assert alive.all() and stay[-1, 0, 0] == 2.0 + 7.5


def test_bilinear_sampling_is_exact_on_affine_fields_and_at_the_border():
    h, w = 9, 11
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    field = torch.stack([0.5 * xx - 2 * yy + 1, 3 * yy])
    points = torch.tensor([[0.0, 0.0], [10.0, 8.0], [3.25, 7.5], [9.99, 0.01], [4.0, 4.0]], dtype=torch.float64)
    expected = torch.stack([0.5 * points[:, 0] - 2 * points[:, 1] + 1, 3 * points[:, 1]], dim=1)
    torch.testing.assert_close(bilinear_sample(field, points), expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# the tracker around the flow: preprocessing, padding, windows


def test_preprocessing_is_torchvisions_optical_flow_transform():
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    rgb = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    chw = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    for weights in (Raft_Large_Weights.DEFAULT, Raft_Small_Weights.DEFAULT):
        one, two = weights.transforms()(chw[:2], chw[1:])
        ours = raft_input(rgb)
        torch.testing.assert_close(ours[:2], one, atol=1e-6, rtol=0)
        torch.testing.assert_close(ours[1:], two, atol=1e-6, rtol=0)
    grey = rgb[..., 0]
    assert torch.equal(raft_input(grey), raft_input(np.repeat(grey[..., None], 3, axis=-1)))
    assert raft_input(np.array([[[0, 255]]], np.uint8)).flatten().tolist() == [-1.0, 1.0] * 3
    with pytest.raises(ValueError, match="uint8 frames"):
        raft_input(rgb.astype(np.float32))


def _translation_fn(d: tuple[float, float]):
    def flow_fn(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        flow = torch.empty(len(img1), 2, *img1.shape[-2:])
        flow[:, 0], flow[:, 1] = d
        return flow
    return flow_fn


def test_forward_tracks_the_fvmd_grid_and_windows_share_flows():
    frames = np.zeros((20, 256, 256), np.uint8)
    tracker = RaftTracker(None, RaftConfig(), flow_fn=_translation_fn((0.25, -0.25)))
    trajectories, lost = tracker(frames[:16])
    grid = grid_points((256, 256), 20, 8.0)
    assert trajectories.shape == (16, 400, 2) and trajectories.dtype == np.float32 and lost == 0.0
    np.testing.assert_allclose(trajectories, grid[None] + np.arange(16)[:, None, None] * [0.25, -0.25], atol=1e-4)
    windows, losts = tracker.track_windows(frames, 16, 2)
    assert len(windows) == 3 and losts == [0.0] * 3  # starts 0, 2, 4
    for window in windows:
        np.testing.assert_array_equal(window, trajectories)
    # a translation that carries the right-most column out after one step: 20 of 400 points lost, held
    far = RaftTracker(None, RaftConfig(), flow_fn=_translation_fn((9.0, 0.0)))
    trajectories, lost = far(frames[:3])
    assert lost == pytest.approx(20 / 400)
    right = grid[:, 0] == grid[:, 0].max()
    np.testing.assert_array_equal(trajectories[2, right], grid[right])


def test_padding_to_a_multiple_of_8_is_cropped_back_in_place():
    """A horizontal ramp image read back as the flow: the flow at pixel x must be the ramp at x, so the crop of
    the edge-padded frames lines up with the original pixels."""
    h, w = 132, 130  # padded to 136 x 136: 2 + 2 rows, 3 + 3 columns
    frames = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, None], (4, h, w)).copy()

    def ramp_fn(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        assert img1.shape[-2:] == (136, 136)
        value = (img1[:, 0] + 1) / 2 * 255  # the ramp: x of the original frame
        return torch.stack([0.01 * value, torch.zeros_like(value)], dim=1)

    tracker = RaftTracker(None, RaftConfig(grid=4, margin=8.0), flow_fn=ramp_fn)
    trajectories, lost = tracker(frames)
    x = trajectories[:, :, 0].astype(np.float64)
    np.testing.assert_allclose(x[1:], x[:-1] * 1.01, atol=1e-4)
    assert lost == 0.0


def test_too_small_or_too_short_inputs_are_refused():
    tracker = RaftTracker(build_raft("raft_small"), SMALL)
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE}x{MIN_SIZE}"):
        tracker(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="at least 2 frames|need at least"):
        tracker.track_windows(np.zeros((3, 128, 128), np.uint8), 4)
    with pytest.raises(ValueError, match="arch must be one of"):
        RaftConfig(arch="raft_huge")


# ---------------------------------------------------------------------------------------------------------
# weights: registry, loader


def test_registry_entries_are_torchvisions_published_files():
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    for arch, published in (("raft_large", Raft_Large_Weights.DEFAULT), ("raft_small", Raft_Small_Weights.DEFAULT)):
        entry = W.get_entry(ARCHS[arch])
        assert entry.url == published.url and entry.url.endswith("/" + entry.file)
        assert entry.sha256.startswith(entry.sha256_prefix) and f"-{entry.sha256_prefix}.pth" in entry.file
    assert ARCHS == {"raft_large": "raft_large:C_T_SKHT_V2", "raft_small": "raft_small:C_T_V2"}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A state dict saved from torchvision's raft_small (its own random init), as a user would save one."""
    torch.manual_seed(3)
    model = build_raft("raft_small")
    path = tmp_path_factory.mktemp("raft") / "raft_small_C_T_V2-01064c6d.pth"
    torch.save(model.state_dict(), path)
    return path, state_dict_sha256(model.state_dict())


def test_loader_accepts_torchvisions_state_dict_as_custom_weights(small_file):
    path, digest = small_file
    tracker, info = load_raft_tracker(CustomWeights(path), "fvmd/raft-small", SMALL)
    assert state_dict_sha256(tracker.raft.state_dict()) == digest
    assert info.identifier == f"custom:{path.name}" and info.sha256 == W.file_sha256(path)
    assert not info.comparable and info.detector == "torchvision-raft" and info.protocol == "fvmd/raft-small"
    assert not tracker.training


def test_loader_refuses_a_state_dict_of_another_architecture_naming_the_file(tmp_path, small_file):
    large = tmp_path / "large.pth"
    torch.save(build_raft("raft_large").state_dict(), large)
    with pytest.raises(ValueError, match=rf"{large}: not a state dict of torchvision's raft_small.*missing.*"
                                         r"unexpected.*another shape"):
        load_raft_tracker(CustomWeights(large), "fvmd/raft-small", SMALL)
    partial = tmp_path / "partial.pth"
    state = torch.load(small_file[0], weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, partial)
    with pytest.raises(ValueError, match=rf"{partial}: .*1 missing"):
        load_raft_state(build_raft("raft_small"), partial, "raft_small")


def test_pretrained_is_read_from_the_weights_store_only(tmp_path, monkeypatch, small_file):
    path, digest = small_file
    with pytest.raises(W.WeightsNotFoundError, match=r"raft_small_C_T_V2-01064c6d\.pth(.|\n)*"
                                                     r"ophora\.weights fetch raft_small:C_T_V2"):
        load_raft_tracker("pretrained", "fvmd/raft-small", SMALL)
    store = tmp_path / "store"
    store.mkdir()
    (store / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(store))
    with pytest.raises(W.ChecksumMismatchError, match="raft_small:C_T_V2"):  # not the published bytes
        load_raft_tracker("pretrained", "fvmd/raft-small", SMALL)
    entry = dataclasses.replace(W.get_entry("raft_small:C_T_V2"), sha256=W.file_sha256(path), sha256_prefix=None)
    monkeypatch.setitem(W.REGISTRY, entry.name, entry)
    for weights in ("pretrained", store / path.name):
        tracker, info = load_raft_tracker(weights, "fvmd/raft-small", SMALL)
        assert state_dict_sha256(tracker.raft.state_dict()) == digest
        assert info.identifier == "raft_small:C_T_V2:raft_small_C_T_V2-01064c6d.pth" and info.comparable
        assert info.sha256 == entry.sha256


# ---------------------------------------------------------------------------------------------------------
# end to end with a seeded raft_small


def _clip() -> np.ndarray:
    """3 grey 64x64 frames of a textured square moving 2 px right per frame, upscaled to 128x128 (RAFT's least
    size) with OpenCV's bilinear filter, as FVMD upscales to 256x256."""
    texture = np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8)
    frames = np.full((3, 64, 64), 90, np.uint8)
    for t in range(3):
        frames[t, 20:44, 10 + 2 * t:34 + 2 * t] = texture
    return np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR) for f in frames])


def test_random_init_raft_small_end_to_end_is_finite_and_deterministic():
    frames, config = _clip(), RaftConfig(arch="raft_small", num_flow_updates=4)
    tracker, info = load_raft_tracker("random-init", "fvmd/raft-small", config, seed=0)
    first, lost = tracker(frames)
    again, lost_again = tracker(frames)
    assert first.shape == (3, 400, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert lost == lost_again and 0.0 <= lost <= 1.0
    np.testing.assert_array_equal(first[0], grid_points((128, 128), 20, 8.0))
    assert ((first >= 0) & (first <= 127)).all()  # lost points are held inside the frame
    assert np.abs(first[1:] - first[:1]).max() > 0.01  # the network moved the points
    rgb = np.repeat(frames[..., None], 3, axis=-1)  # RGB input of grey content: the same tracks
    np.testing.assert_array_equal(tracker(rgb)[0], first)
    # the record: the same seed gives the same weights (digest of the state dict), another seed others
    twin = load_raft_tracker("random-init", "fvmd/raft-small", config, seed=0)[1]
    assert twin == info and info.identifier == "random-init:raft_small:seed=0" and not info.comparable
    assert info.sha256 == state_dict_sha256(tracker.raft.state_dict())
    assert load_raft_tracker("random-init", "fvmd/raft-small", config, seed=1)[1].sha256 != info.sha256
