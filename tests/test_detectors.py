"""Detectors: seeded random-init variants, the real-weights loading paths (exercised with local files of the
same architecture), pytorch-fid parity, I3D TorchScript round trip and CLIP embeddings / truncation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.detectors import seeded_state_dict, state_dict_sha256
from benchmarks.detectors.clip import TINY_MODEL, load_clip
from benchmarks.detectors.i3d import export_random_i3d, i3d_features, load_i3d
from benchmarks.detectors.inception import fid_features, fid_template_state_dict, load_fid_inception
from ophora import weights as W


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)


def _register_file(monkeypatch, name: str, path, loader: str = "state_dict") -> None:
    """A registry entry whose checksum is that of the local file ``path``."""
    entry = W.WeightsEntry(name=name, file=path.name, url="file:///nowhere", loader=loader, license="test",
                           sha256=W.file_sha256(path))
    monkeypatch.setitem(W.REGISTRY, name, entry)


def _frames(n: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------
# FID Inception (about 2 s per build, 0.1-0.3 s per frame)


@pytest.fixture(scope="module")
def fid_seed0():
    return load_fid_inception("random-init", seed=0)


def test_fid_random_init_is_seeded(fid_seed0):
    model, info = fid_seed0
    again, info_again = load_fid_inception("random-init", seed=0)
    other, info_other = load_fid_inception("random-init", seed=1)
    assert info.identifier == "random-init:fid-inception-v3:seed=0" and not info.comparable
    assert info.sha256 == info_again.sha256 == state_dict_sha256(again.state_dict()) != info_other.sha256
    frames = _frames(2)
    features = fid_features(frames, model)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert torch.equal(features, fid_features(frames, again))
    assert not torch.allclose(features, fid_features(frames, other))


def test_fid_features_equal_pytorch_fid_called_directly(fid_seed0):
    model, _ = fid_seed0
    frames = _frames(3, 33, 57, seed=1)
    unit = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # pytorch-fid's ToTensor
    with torch.no_grad():
        direct = model(unit)[0].squeeze(3).squeeze(2)
    assert model.resize_input and model.normalize_input
    assert torch.equal(fid_features(frames, model, batch_size=2), direct)
    assert torch.equal(fid_features(unit, model), direct)


def test_fid_real_weights_path_with_a_local_state_dict(tmp_path, monkeypatch, fid_seed0):
    path = tmp_path / "fid_weights.pth"
    torch.save(seeded_state_dict(fid_template_state_dict(), 0), path)
    _register_file(monkeypatch, "test-fid", path)
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(tmp_path))
    model, info = load_fid_inception("pretrained", entry_name="test-fid")
    assert info.comparable and info.sha256 == W.file_sha256(path) and info.path == str(path)
    frames = _frames(2)
    assert torch.equal(fid_features(frames, model), fid_features(frames, fid_seed0[0]))


def test_fid_pretrained_missing_names_the_fetch_command():
    with pytest.raises(W.WeightsNotFoundError, match="fetch pytorch-fid-inception"):
        load_fid_inception("pretrained")


# ---------------------------------------------------------------------------------------------------------
# I3D


def test_i3d_torchscript_round_trip_through_the_registry_path(tmp_path, monkeypatch):
    eager, info = load_i3d("random-init", seed=0)
    path = export_random_i3d(tmp_path / "i3d_random.pt", seed=0)
    _register_file(monkeypatch, "test-i3d", path, loader="torchscript")
    loaded, loaded_info = load_i3d(path, entry_name="test-i3d")
    assert isinstance(loaded, torch.jit.ScriptModule) and loaded_info.comparable
    assert state_dict_sha256(loaded.state_dict()) == info.sha256
    videos = _frames(16, 48, 64).reshape(1, 16, 48, 64, 3)  # non-224 input: the detector resizes
    features = i3d_features(videos, loaded)
    assert features.shape == (1, 400)
    assert torch.equal(features, i3d_features(videos, eager))


@pytest.fixture(scope="module")
def tiny_i3d():
    return load_i3d("random-init", seed=0, tiny=True)


def test_tiny_i3d_is_seeded_and_named(tiny_i3d):
    model, info = tiny_i3d
    assert info.identifier == "random-init:i3d-tiny:seed=0" and not info.comparable
    assert load_i3d("random-init", seed=0, tiny=True)[1].sha256 == info.sha256
    assert load_i3d("random-init", seed=1, tiny=True)[1].sha256 != info.sha256
    videos = np.stack([_frames(16, 32, 40, seed=s) for s in range(2)])
    features = i3d_features(videos, model)
    assert features.shape == (2, 400) and torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])


def test_i3d_flags_follow_stylegan_v(tiny_i3d):
    model, _ = tiny_i3d
    x = torch.from_numpy(_frames(10, 30, 50)).permute(3, 0, 1, 2)[None]  # uint8 [1, 3, T, H, W]
    unit = x.float() / 255 * 2 - 1
    per_frame = F.interpolate(unit[0].permute(1, 0, 2, 3), size=(224, 224), mode="bilinear", align_corners=False)
    resized = per_frame.permute(1, 0, 2, 3)[None]  # rescale then resize == per-frame bilinear to 224
    with torch.no_grad():
        logits = model(x, rescale=True, resize=True, return_features=True)
        assert torch.allclose(logits, model(resized, return_features=True), atol=1e-5)
        probs = model(x, rescale=True, resize=True)
    assert torch.allclose(probs, logits.softmax(1)) and torch.allclose(probs.sum(1), torch.ones(1))


def test_i3d_pre_logit_shape_at_16x224(tiny_i3d):
    net = tiny_i3d[0].net
    with torch.no_grad():
        x = torch.zeros(1, 3, 16, 224, 224)
        x = net.maxpool_3a(net.conv3d_2c_3x3(net.conv3d_2b_1x1(net.maxpool_2a(net.conv3d_1a_7x7(x)))))
        x = net.mixed_5(net.maxpool_5a(net.mixed_4(net.maxpool_4a(net.mixed_3(x)))))
    assert x.shape == (1, 128, 2, 7, 7)  # TF-SAME strides as in kinetics-i3d: 16 -> 2 frames, 224 -> 7


# ---------------------------------------------------------------------------------------------------------
# CLIP


def test_tiny_clip_embeddings_are_normalised_and_seeded():
    clip = load_clip(TINY_MODEL, "random-init", seed=0)
    images = clip.image_features(_frames(3))
    texts = clip.text_features(["capsulorhexis with forceps", "phacoemulsification"])
    assert images.shape == (3, 64) and texts.shape == (2, 64) and images.dtype == torch.float32
    assert torch.allclose(images.norm(dim=1), torch.ones(3)) and torch.allclose(texts.norm(dim=1), torch.ones(2))
    again = load_clip(TINY_MODEL, "random-init", seed=0)
    assert again.info.sha256 == clip.info.sha256 != load_clip(TINY_MODEL, seed=1).info.sha256
    assert torch.equal(again.image_features(_frames(3)), images)


def test_clip_truncation_is_detected():
    clip = load_clip(TINY_MODEL, "random-init")
    prompts = ["an intraocular lens is inserted", "the surgeon " * 60]
    counts = clip.token_counts(prompts)
    assert clip.context_length == 77 and counts[0] < 77 < counts[1]
    assert clip.truncated(prompts) == [False, True]
    tokens = clip.tokenizer(prompts)
    assert tokens.shape == (2, 77) and tokens[1, -1] == clip.tokenizer.eot_token_id


def test_clip_real_weights_path_with_a_local_file(tmp_path, monkeypatch):
    reference = load_clip(TINY_MODEL, "random-init", seed=3)
    path = tmp_path / "tiny_clip.pt"
    torch.save(reference.model.state_dict(), path)
    _register_file(monkeypatch, f"open_clip:{TINY_MODEL}/test", path)
    loaded = load_clip(TINY_MODEL, path, tag="test")
    assert loaded.info.comparable and loaded.info.identifier == f"open_clip:{TINY_MODEL}/test:tiny_clip.pt"
    prompts = ["irrigation and aspiration"]
    assert torch.equal(loaded.text_features(prompts), reference.text_features(prompts))
    assert torch.equal(loaded.image_features(_frames(2)), reference.image_features(_frames(2)))


@pytest.mark.slow
def test_vit_l14_random_init_builds_offline():
    clip = load_clip("ViT-L-14", "random-init", seed=0)  # about 6 s to build 428M parameters
    texts = clip.text_features(["lens capsule"])
    assert texts.shape == (1, 768) and torch.allclose(texts.norm(dim=1), torch.ones(1))
    assert clip.info.identifier == "random-init:ViT-L-14:seed=0"
