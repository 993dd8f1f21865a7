"""FVD end to end equals a faithful re-implementation of StyleGAN-V's ``compute_fvd`` on the same clips.

StyleGAN-V (src/metrics/frechet_video_distance.py, metric_utils.py): features of uint8 [B, 3, T, H, W]
clips from ``detector(x, rescale=True, resize=True, return_features=True)``, accumulated by its
FeatureStats (float32 features, float64 raw sums of x and x^T x, ``cov = raw_cov / n - mean mean^T``: 1/N)
and ``m + trace(S_gen + S_real - 2 sqrtm(S_gen S_real))`` with scipy. Real clips: 16 consecutive frames at
the seeded offset of each real video; generated clips: the first 16 frames. The detector is a small scripted
stand-in with the I3D call signature (pooling + a fixed random projection to 400-d), loaded through the
TorchScript weights path (``--weights fvd=FILE``) as the real file would be. The tiny and full random-init
I3D share that path (tests/test_detectors.py checks the full one's TorchScript round trip); a full I3D
forward costs about 1-2 s per clip here, so it is not run again end to end.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics.fvd import real_clip_offset, tf1_resize_bilinear
from ophora import weights as W
from ophora.data.video import Consecutive, read_video
from ophora.weights import jit_load, jit_save

from eval_sets import make_folder, make_generated


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


class StandInI3D(nn.Module):
    """The I3D TorchScript's call signature on a cheap network: rescale to [-1, 1], resize to (T, 32, 32),
    average-pool to 4x4x4, project to 400-d with a fixed random matrix."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(3 * 64, 400, generator=generator), requires_grad=False)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.to(torch.float32)
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 32, 32], mode="trilinear", align_corners=False)
        features = F.adaptive_avg_pool3d(x, [4, 4, 4]).flatten(1) @ self.proj
        return features if return_features else F.softmax(features, dim=1)


class StyleGANVFeatureStats:
    """StyleGAN-V metric_utils.FeatureStats with capture_mean_cov=True."""

    def __init__(self):
        self.num_items, self.raw_mean, self.raw_cov = 0, None, None

    def append(self, x):
        x = np.asarray(x, dtype=np.float32)
        if self.raw_mean is None:
            self.raw_mean = np.zeros([x.shape[1]], dtype=np.float64)
            self.raw_cov = np.zeros([x.shape[1], x.shape[1]], dtype=np.float64)
        self.num_items += x.shape[0]
        x64 = x.astype(np.float64)
        self.raw_mean += x64.sum(axis=0)
        self.raw_cov += x64.T @ x64

    def get_mean_cov(self):
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items
        return mean, cov - np.outer(mean, mean)


def stylegan_v_fvd(mu_gen, sigma_gen, mu_real, sigma_real) -> float:
    """compute_fvd's last lines (sqrtm without the ``disp`` argument SciPy removes in 1.18)."""
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def _clips(paths, keys, seed, real):
    clips = []
    for path, key in zip(paths, keys):
        total = len(read_video(path))
        offset = real_clip_offset(seed, key, total, 16) if real else 0
        clips.append(read_video(path, select=Consecutive(16, offset)))
    return torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).contiguous()  # uint8 [B, 3, 16, H, W]


def _register(monkeypatch, path):
    entry = W.WeightsEntry(name="stylegan-v-i3d", file=path.name, url="file:///nowhere", loader="torchscript",
                           license="test", sha256=W.file_sha256(path))
    monkeypatch.setitem(W.REGISTRY, "stylegan-v-i3d", entry)


@pytest.fixture()
def videos(tmp_path):
    real = make_folder(tmp_path / "real", 10, [20 + 3 * i for i in range(10)], seed=0)
    fake = make_generated(tmp_path / "fake", 10, 18, seed=1, tint=60.0)
    return tmp_path, real, fake


def _reference(detector, real_clips, fake_clips, **kwargs):
    stats_real, stats_gen = StyleGANVFeatureStats(), StyleGANVFeatureStats()
    with torch.no_grad():
        for start in range(0, len(real_clips), 4):  # StyleGAN-V batches
            stats_real.append(detector(real_clips[start:start + 4], **kwargs).numpy())
        for start in range(0, len(fake_clips), 4):
            stats_gen.append(detector(fake_clips[start:start + 4], **kwargs).numpy())
    return stats_real, stats_gen


def test_fvd_equals_stylegan_v_compute_fvd(videos, monkeypatch):
    root, real, fake = videos
    path = jit_save(StandInI3D(), root / "standin_i3d.pt")
    _register(monkeypatch, path)
    cfg = EvalConfig(str(root / "real"), str(root / "fake"), metrics=("fvd",), detector_weights=(("fvd", str(path)),),
                     seed=11, bootstrap=0, batch_size=3, workers=0, progress=False)
    ours = evaluate(cfg)["metrics"]["fvd"]

    keys = [p.name for p in real]
    offsets = [real_clip_offset(11, k, 20 + 3 * i, 16) for i, k in enumerate(keys)]
    assert len(set(offsets)) > 2  # the real clips really start at different, seeded offsets
    detector = jit_load(path)
    stats_real, stats_gen = _reference(detector, _clips(real, keys, 11, True), _clips(fake, keys, 11, False),
                                       rescale=True, resize=True, return_features=True)
    expected = stylegan_v_fvd(*stats_gen.get_mean_cov(), *stats_real.get_mean_cov())
    assert expected > 1.0
    assert ours["value"] == pytest.approx(expected, rel=1e-6)
    assert (ours["n_real"], ours["n_fake"]) == (10, 10)
    assert ours["detector"]["sha256"] == W.file_sha256(path) and ours["detector"]["comparable_with_literature"]

    other_seed = evaluate(EvalConfig(**{**cfg.__dict__, "seed": 12}))["metrics"]["fvd"]["value"]
    assert other_seed != pytest.approx(ours["value"], rel=1e-6)  # different real offsets, different number


def test_fvd_tf_preprocessing_and_divisor(videos, monkeypatch):
    root, real, fake = videos
    path = jit_save(StandInI3D(), root / "standin_i3d.pt")
    _register(monkeypatch, path)
    cfg = EvalConfig(str(root / "real"), str(root / "fake"), metrics=("fvd",), protocols=(("fvd", "fvd/tf"),),
                     detector_weights=(("fvd", str(path)),), seed=11, bootstrap=0, workers=0, progress=False)
    ours = evaluate(cfg)["metrics"]["fvd"]

    def tf_preprocess(clips):  # google-research frechet_video_distance.preprocess
        b, c, t, h, w = clips.shape
        frames = clips.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).float()
        resized = tf1_resize_bilinear(frames, (224, 224))
        return (2.0 * resized / 255.0 - 1).reshape(b, t, c, 224, 224).permute(0, 2, 1, 3, 4)

    detector = jit_load(path)
    keys = [p.name for p in real]
    with torch.no_grad():
        act_real = detector(tf_preprocess(_clips(real, keys, 11, True)), return_features=True).double().numpy()
        act_fake = detector(tf_preprocess(_clips(fake, keys, 11, False)), return_features=True).double().numpy()
    mu1, s1 = act_real.mean(0), np.cov(act_real, rowvar=False)
    mu2, s2 = act_fake.mean(0), np.cov(act_fake, rowvar=False)
    expected = float(np.real(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2))))
    assert ours["value"] == pytest.approx(expected, rel=1e-6)
    assert ours["protocol"]["name"] == "fvd/tf" and ours["protocol"]["divisor"] == "N-1"

