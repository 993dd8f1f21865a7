"""fid/stylegan-v against an independent re-implementation of StyleGAN-V's fid50k_full.

StyleGAN-V (src/metrics/metric_utils.py, metric_main.py): ``fid50k_full`` = ``compute_fid(max_real=None,
num_gen=50000)``; every frame of every video is one image (``use_image_dataset``: an ImageFolderDataset over all
frame files), the detector NVIDIA's ``inception-2015-12-05.pt`` called as ``detector(uint8 [N, 3, H, W],
return_features=True)`` in batches of 64; ``FeatureStats`` keeps float32 features, float64 sums of x and x^T x,
``cov = raw_cov / n - mean mean^T`` (divisor N); the distance ``m + trace(S_gen + S_real - 2 sqrtm(S_gen S_real))``
with scipy. The reference below is written here from that description, not imported.

The detector is a small scripted stand-in with NVIDIA's call signature and its preprocessing (TF1-aligned
affine_grid/grid_sample resample to 299x299, (x - 128) / 128), loaded through the TorchScript weights path as
the real file would be. The random-init stand-in of the full network (:class:`StyleGANVInception`) is checked
below for the same preprocessing (TF1's resize rule) and call.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.detectors.inception import StyleGANVInception, load_stylegan_inception
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics import build, get_protocol, protocol_for
from benchmarks.metrics.fd import FrechetState
from benchmarks.metrics.fid import FID, StyleGANVFIDProtocol
from benchmarks.metrics.fvd import tf1_resize_bilinear
from ophora import weights as W
from ophora.data.video import read_video
from ophora.weights import jit_load, jit_save

from eval_sets import make_folder, make_generated


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------------------
# StyleGAN-V's formulas, re-implemented


class StyleGANVFeatureStats:
    """metric_utils.FeatureStats(capture_mean_cov=True, max_items=...)."""

    def __init__(self, max_items: int | None = None):
        self.max_items, self.num_items, self.raw_mean, self.raw_cov = max_items, 0, None, None

    def append(self, x) -> None:
        x = np.asarray(x, dtype=np.float32)
        if self.max_items is not None and self.num_items + len(x) > self.max_items:
            x = x[:max(self.max_items - self.num_items, 0)]
        if self.raw_mean is None:
            self.raw_mean = np.zeros(x.shape[1], dtype=np.float64)
            self.raw_cov = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
        x64 = x.astype(np.float64)
        self.num_items += len(x)
        self.raw_mean += x64.sum(axis=0)
        self.raw_cov += x64.T @ x64

    def get_mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.raw_mean / self.num_items
        return mean, self.raw_cov / self.num_items - np.outer(mean, mean)


def stylegan_v_fid(mu_gen, sigma_gen, mu_real, sigma_real) -> float:
    """compute_fid's last lines (scipy sqrtm; its ``disp`` argument is gone from recent SciPy)."""
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def numpy_cov_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """The same distance with numpy.cov (divisor N - 1), as pytorch-fid forms it."""
    r, f = real.astype(np.float64), fake.astype(np.float64)
    return stylegan_v_fid(f.mean(0), np.cov(f, rowvar=False), r.mean(0), np.cov(r, rowvar=False))


# ---------------------------------------------------------------------------------------------------------
# statistics and distance on the same features


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """float32 [n, d], correlated and skewed (not Gaussian), with a large common offset as detectors give."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return (np.exp(rng.normal(size=(n, d)) * 0.5) @ mixing + 3.0 + shift).astype(np.float32)


def _state(features: np.ndarray, dim: int, per_video: int = 4) -> FrechetState:
    state = FrechetState(dim, "N")
    for start in range(0, len(features), 9 * per_video):  # batches of whole videos, as the loader gives
        chunk = features[start:start + 9 * per_video]
        state.update(chunk, (start + np.arange(len(chunk))) // per_video)
    return state


def test_statistics_and_distance_equal_stylegan_v_on_the_same_features():
    d = 64
    metric = FID(FID.with_changes(StyleGANVFIDProtocol(), dim=d))
    real, fake = _features(300, d, 0), _features(260, d, 1, shift=0.4)
    ref_real, ref_fake = StyleGANVFeatureStats(), StyleGANVFeatureStats(max_items=50_000)
    for start in range(0, 300, 64):
        ref_real.append(real[start:start + 64])
    for start in range(0, 260, 64):
        ref_fake.append(fake[start:start + 64])
    mu_r, sigma_r = ref_real.get_mean_cov()
    mu_f, sigma_f = ref_fake.get_mean_cov()

    s_real, s_fake = _state(real, d), _state(fake, d)
    np.testing.assert_allclose(s_real.stats.mean(), mu_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s_real.stats.cov("N"), sigma_r, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(s_fake.stats.cov("N"), sigma_f, rtol=1e-9, atol=1e-10)

    ours = metric.compute(s_real, s_fake)
    expected = stylegan_v_fid(mu_f, sigma_f, mu_r, sigma_r)
    assert expected > 1.0
    assert ours["value"] == pytest.approx(expected, rel=1e-9)
    assert (ours["n_real_rows"], ours["n_fake_rows"], ours["n_real"], ours["n_fake"]) == (300, 260, 75, 65)

    # divisor N (StyleGAN-V) is not numpy.cov's N - 1 (pytorch-fid): the same features give another number
    n_minus_1 = numpy_cov_fid(real, fake)
    assert abs(expected - n_minus_1) > 1e-4 * expected  # 0.045 of 179 here, far beyond the 1e-9 agreement
    assert ours["value"] != pytest.approx(n_minus_1, rel=1e-6)
    # S_N = (N - 1) / N S_{N-1}: the pytorch-fid protocol on rescaled covariances gives StyleGAN-V's number
    scaled = stylegan_v_fid(fake.astype(np.float64).mean(0), np.cov(fake, rowvar=False) * 259 / 260,
                            real.astype(np.float64).mean(0), np.cov(real, rowvar=False) * 299 / 300)
    assert scaled == pytest.approx(expected, rel=1e-9)


def test_a_set_against_itself_is_zero():
    d = 64
    metric = FID(FID.with_changes(StyleGANVFIDProtocol(), dim=d))
    feats = _features(200, d, 3)
    result = metric.compute(_state(feats, d), _state(feats, d))
    trace = float(np.trace(_state(feats, d).stats.cov("N")))
    assert abs(result["value"]) < 1e-8 * trace
    shifted = metric.compute(_state(feats, d), _state(feats + np.float32(0.5), d))["value"]
    assert shifted == pytest.approx(d * 0.25, rel=1e-5)  # a pure mean shift adds |delta|^2 and nothing else


def test_divisor_n_against_n_minus_1_at_2048_samples():
    """The divisor's effect at StyleGAN-V's N = 2048 (fvd2048_16f's N; fid50k_full has more frames): with
    S_N = (N - 1)/N S_{N-1} for both sets, FID_N = |dm|^2 + (N - 1)/N (FID_{N-1} - |dm|^2) exactly, so
    pytorch-fid's divisor reads higher by (FID_{N-1} - |dm|^2) / N."""
    d, n = 64, 2048
    real, fake = _features(n, d, 5), _features(n, d, 6, shift=0.2)
    metric = FID(FID.with_changes(StyleGANVFIDProtocol(), dim=d))
    ours = metric.compute(_state(real, d), _state(fake, d))["value"]
    pytorch_fid = numpy_cov_fid(real, fake)
    mean_term = float(np.square(real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)).sum())
    assert pytorch_fid - ours == pytest.approx((pytorch_fid - mean_term) / n, rel=1e-6)
    assert pytorch_fid - ours > 1e-5 * pytorch_fid


def test_generated_frames_beyond_the_limit_are_refused_not_scored():
    d = 16
    metric = FID(FID.with_changes(StyleGANVFIDProtocol(), dim=d, max_fake_frames=100))
    result = metric.compute(_state(_features(300, d, 0), d), _state(_features(120, d, 1), d))
    assert result["value"] is None and "120 frames" in result["error"] and "at most 100" in result["error"]
    assert metric.compute(_state(_features(300, d, 0), d), _state(_features(100, d, 1), d))["value"] > 0
    assert get_protocol("fid/stylegan-v").max_fake_frames == 50_000
    assert get_protocol("fid/stylegan-v").max_real_frames is None


def test_protocol_reads_every_frame_and_refuses_a_frame_count():
    protocol = get_protocol("fid/stylegan-v")
    assert list(protocol.frame_indices(7, "real", 0, "a.mp4")) == list(range(7))
    assert list(protocol.frame_indices(3, "fake", 5, "b.mp4")) == [0, 1, 2]
    assert (protocol.divisor, protocol.samples, protocol.dim) == ("N", "frames", 2048)
    with pytest.raises(ValueError, match="reads every frame"):
        protocol_for("fid", "fid/stylegan-v", frames="uniform", frames_per_video=8)

    class Options:  # what EvalConfig gives build(): --fid-frames 4
        fid_frames = 4

    with pytest.raises(ValueError, match="leave fid_frames unset"):
        build("fid", Options(), "fid/stylegan-v")
    frames = np.random.default_rng(0).integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    prepared = protocol.prepare(frames)
    assert prepared.dtype == torch.uint8 and prepared.shape == (5, 3, 20, 30)
    assert torch.equal(prepared[2], torch.from_numpy(frames[2]).permute(2, 0, 1))


# ---------------------------------------------------------------------------------------------------------
# the detector's call and preprocessing


@pytest.mark.parametrize("size", [(37, 53), (128, 128), (480, 720)])
def test_detector_resample_is_tf1_bilinear(size):
    x = torch.rand(2, 3, *size) * 255
    ours = StyleGANVInception.resample(x)
    assert ours.shape == (2, 3, 299, 299)
    # float32 sampling grids: coordinates within about 1e-4 pixel of i * W / 299, so values within 0.05 of 255
    torch.testing.assert_close(ours, tf1_resize_bilinear(x, (299, 299)), rtol=0, atol=0.05)
    half_pixel = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (ours - half_pixel).abs().max() > 1.0  # not torch's half-pixel rule
    same = torch.rand(1, 3, 299, 299) * 255
    torch.testing.assert_close(StyleGANVInception.resample(same), same, rtol=0, atol=0.02)  # identity at 299


@pytest.mark.slow
def test_random_init_detector_call_and_record():
    """The full random-init network (a 299x299 Inception forward: about 1 s per call on 2 busy cores)."""
    model, info = load_stylegan_inception("random-init", seed=0)
    assert info.identifier == "random-init:stylegan-v-inception:seed=0" and not info.comparable
    assert info.detector == "stylegan-v-inception" and len(info.sha256) == 64
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 40, 40), dtype=np.uint8))
    with torch.inference_mode():
        features = model(images, return_features=True)
        probs = model(images)
    assert features.shape == (1, 2048) and features.dtype == torch.float32 and features.std() > 0
    assert probs.shape == (1, 1008)
    torch.testing.assert_close(probs.sum(1), torch.ones(1))
    with torch.inference_mode():  # the features are the softmax layer's input: its argmax is the logits' argmax
        logits = features @ model.net.fc.weight.t() + model.net.fc.bias
    assert int(probs.argmax()) == int(logits.argmax())


# ---------------------------------------------------------------------------------------------------------
# end to end: video files -> number, through the TorchScript weights path


ACTIVE = 64  # the stand-in's features are zero beyond their first 64 of 2048 coordinates


class StandInInception(nn.Module):
    """NVIDIA's call signature and preprocessing on a cheap network: TF1-aligned resample to 299x299,
    (x - 128) / 128, average-pool to 8x8, a fixed random projection and softplus to 64 values, zero-padded to the
    protocol's 2048-d (so that the reference's scipy sqrtm can run on the 64x64 block: sqrtm of a block-diagonal
    matrix with a zero block is the block's sqrtm beside zeros, at 1/500 of the 2048-d cost)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(3 * 64, ACTIVE, generator=generator) / 8, requires_grad=False)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        n, c, h, w = img.shape
        x = img.to(torch.float32)
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
        grid = F.affine_grid(theta.unsqueeze(0).repeat(n, 1, 1), [n, c, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = (x - 128) / 128
        features = F.softplus(F.adaptive_avg_pool2d(x, [8, 8]).flatten(1) @ self.proj)
        features = F.pad(features, [0, 2048 - features.shape[1]])
        return features if return_features else F.softmax(features, dim=1)


def _register(monkeypatch, path):
    entry = W.WeightsEntry(name="stylegan-v-inception", file=path.name, url="file:///nowhere", loader="torchscript",
                           license="test", sha256=W.file_sha256(path))
    monkeypatch.setitem(W.REGISTRY, "stylegan-v-inception", entry)


def _reference_stats(paths, detector, max_items=None) -> StyleGANVFeatureStats:
    """Every frame of every video, in file-name order, through the detector in batches of 64."""
    frames = np.concatenate([read_video(p) for p in sorted(paths)])  # uint8 [N, H, W, 3]
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    stats = StyleGANVFeatureStats(max_items)
    with torch.no_grad():
        for start in range(0, len(images), 64):
            stats.append(detector(images[start:start + 64], return_features=True).numpy())
    return stats


@pytest.mark.slow
def test_fid_stylegan_v_end_to_end_equals_the_reference(tmp_path, monkeypatch):
    real = make_folder(tmp_path / "real", 6, [5 + i for i in range(6)], size=(40, 40), seed=0)
    fake = make_generated(tmp_path / "fake", 5, 7, size=(40, 40), seed=1, tint=50.0)
    path = jit_save(StandInInception(), tmp_path / "standin_inception.pt")
    _register(monkeypatch, path)
    cfg = EvalConfig(str(tmp_path / "real"), str(tmp_path / "fake"), metrics=("fid",),
                     protocols=(("fid", "fid/stylegan-v"),), detector_weights=(("fid", str(path)),),
                     bootstrap=0, batch_size=3, workers=0, progress=False)
    ours = evaluate(cfg)["metrics"]["fid"]

    detector = jit_load(path)
    stats_real, stats_gen = _reference_stats(real, detector), _reference_stats(fake, detector, max_items=50_000)
    assert (stats_real.num_items, stats_gen.num_items) == (sum(5 + i for i in range(6)), 35)
    (mu_g, sigma_g), (mu_r, sigma_r) = stats_gen.get_mean_cov(), stats_real.get_mean_cov()
    for mu, sigma in ((mu_g, sigma_g), (mu_r, sigma_r)):  # exactly zero outside the active block
        assert not mu[ACTIVE:].any() and not sigma[ACTIVE:].any() and not sigma[:, ACTIVE:].any()
    block = slice(0, ACTIVE)
    expected = stylegan_v_fid(mu_g[block], sigma_g[block, block], mu_r[block], sigma_r[block, block])
    assert expected > 1e-3
    assert ours["value"] == pytest.approx(expected, rel=1e-6)
    assert (ours["n_real"], ours["n_fake"], ours["n_real_rows"], ours["n_fake_rows"]) == (6, 5, 45, 35)
    assert ours["protocol"]["name"] == "fid/stylegan-v" and ours["protocol"]["divisor"] == "N"
    assert ours["detector"]["sha256"] == W.file_sha256(path) and ours["detector"]["comparable_with_literature"]
