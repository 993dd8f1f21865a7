"""Content-debiased FVD (``fvd/videomae``): parity of preprocessing, network and distance with the ``cd-fvd`` package.

cd-fvd (``cdfvd/utils/data_utils.py``: ``preprocess``; ``cdfvd/fvd.py``: the ``.byte()`` quantisation and
``compute_fvd_from_stats``; ``cdfvd/third_party/VideoMAEv2``: ``preprocess_videomae`` and the ViT of
``videomaev2_finetune.py``) is not installed: it downloads its 4 GB checkpoint on first use and pulls torchvision's
video readers. Its preprocessing, its VideoMAE-v2 forward pass and its distance are written out here from its code;
the network is checked on a small checkpoint in VideoMAE-v2's key layout built by the test.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from benchmarks.detectors import CustomWeights
from benchmarks.detectors.videomae import TINY, VideoMAEFeatures, from_videomae_v2, load_videomae
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics import get_protocol
from benchmarks.metrics.fd import FrechetState
from benchmarks.metrics.fvd import FVD

from eval_sets import clip_frames, make_folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


# --- cd-fvd, transcribed -------------------------------------------------------------------------------------

def cdfvd_preprocess(video, resolution):
    """data_utils.preprocess: THWC uint8 -> CTHW float in [0, 1] (shorter side, antialiased bilinear, centre crop)."""
    video = video.permute(0, 3, 1, 2).float() / 255.0
    t, c, h, w = video.shape
    scale = resolution / min(h, w)
    target = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    video = F.interpolate(video, size=target, mode="bilinear", align_corners=False, antialias=True)
    t, c, h, w = video.shape
    w_start, h_start = (w - resolution) // 2, (h - resolution) // 2
    video = video[:, :, h_start:h_start + resolution, w_start:w_start + resolution]
    return video.permute(1, 0, 2, 3).contiguous()


def cdfvd_model_input(frames, resolution=256):
    """compute_real_stats' ``(batch['video'] * 255).byte()`` (b c t h w -> b t h w c), then preprocess_videomae."""
    video = cdfvd_preprocess(torch.from_numpy(frames), resolution)[None]
    videos = (video * 255).permute(0, 2, 3, 4, 1).byte().numpy()
    out = []
    for vid in torch.from_numpy(videos):
        vid = vid.permute(3, 0, 1, 2).to(torch.float32) / 255  # ToFloatTensorInZeroOne: C T H W
        out.append(F.interpolate(vid, size=(224, 224), scale_factor=None, mode="bilinear", align_corners=False))
    return torch.stack(out)


def cdfvd_fvd(real, fake):
    """StyleGAN-V FeatureStats (cov = raw_cov / N - mean mean^T) and compute_fvd_from_stats."""
    def mean_cov(x):
        mean = x.sum(0) / len(x)
        return mean, x.T @ x / len(x) - np.outer(mean, mean)

    mu_fake, sigma_fake = mean_cov(fake)
    mu_real, sigma_real = mean_cov(real)
    s = scipy.linalg.sqrtm(sigma_real @ sigma_fake)
    return float(np.real(np.square(mu_real - mu_fake).sum() + np.trace(sigma_fake + sigma_real - s * 2)))


def sinusoid_table(n_position, d_hid):
    angles = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]
                       for pos in range(n_position)])
    angles[:, 0::2], angles[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    return torch.tensor(angles, dtype=torch.float32)[None]


def videomae_v2_forward_features(sd, x, heads):
    """videomaev2_finetune.VisionTransformer.forward_features (no layer scale, mean pooling) on state dict ``sd``."""
    x = F.conv3d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(2, 14, 14))
    x = x.flatten(2).transpose(1, 2)
    x = x + sinusoid_table(x.shape[1], x.shape[2])
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        block = {k.split(".", 2)[2]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        p = block.__getitem__
        h = F.layer_norm(x, x.shape[-1:], p("norm1.weight"), p("norm1.bias"), eps=1e-6)
        qkv_bias = torch.cat((p("attn.q_bias"), torch.zeros_like(p("attn.v_bias")), p("attn.v_bias")))
        b, n, c = h.shape
        qkv = F.linear(h, p("attn.qkv.weight"), qkv_bias).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, -1), p("attn.proj.weight"), p("attn.proj.bias"))
        h = F.layer_norm(x, x.shape[-1:], p("norm2.weight"), p("norm2.bias"), eps=1e-6)
        x = x + F.linear(F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))), p("mlp.fc2.weight"),
                         p("mlp.fc2.bias"))
    return F.layer_norm(x.mean(1), x.shape[-1:], sd["fc_norm.weight"], sd["fc_norm.bias"], eps=1e-6)


def videomae_v2_checkpoint(width, depth, seed):
    """A random state dict in VideoMAE-v2's fine-tuned key layout (with a classification head)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.05  # noqa: E731
    sd = {"patch_embed.proj.weight": r(width, 3, 2, 14, 14), "patch_embed.proj.bias": r(width),
          "fc_norm.weight": 1 + r(width), "fc_norm.bias": r(width), "head.weight": r(174, width), "head.bias": r(174)}
    for i in range(depth):
        sd.update({f"blocks.{i}.norm1.weight": 1 + r(width), f"blocks.{i}.norm1.bias": r(width),
                   f"blocks.{i}.attn.qkv.weight": r(3 * width, width), f"blocks.{i}.attn.q_bias": r(width),
                   f"blocks.{i}.attn.v_bias": r(width), f"blocks.{i}.attn.proj.weight": r(width, width),
                   f"blocks.{i}.attn.proj.bias": r(width), f"blocks.{i}.norm2.weight": 1 + r(width),
                   f"blocks.{i}.norm2.bias": r(width), f"blocks.{i}.mlp.fc1.weight": r(2 * width, width),
                   f"blocks.{i}.mlp.fc1.bias": r(2 * width), f"blocks.{i}.mlp.fc2.weight": r(width, 2 * width),
                   f"blocks.{i}.mlp.fc2.bias": r(width)})
    return sd


# --- parity --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(40, 56), (72, 48), (256, 256)])
def test_preprocessing_equals_cdfvd(size):
    frames = clip_frames(16, size, seed=3)
    ours = get_protocol("fvd/videomae").prepare(frames)
    expected = cdfvd_model_input(frames)[0]
    assert tuple(ours.shape) == (3, 16, 224, 224)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_network_equals_videomae_v2_on_a_local_checkpoint(tmp_path):
    sd = videomae_v2_checkpoint(TINY["hidden_size"], TINY["num_hidden_layers"], seed=0)
    assert sd["blocks.0.mlp.fc1.weight"].shape[0] == TINY["intermediate_size"]
    path = tmp_path / "vit_tiny_videomae_v2.pth"
    torch.save({"module": sd}, path)
    model, info = load_videomae(CustomWeights(path), seed=0, tiny=True, protocol="fvd/videomae")
    assert info.identifier == "custom:vit_tiny_videomae_v2.pth" and not info.comparable and len(info.sha256) == 64
    x = torch.rand(2, 3, 16, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = model(x)
    expected = videomae_v2_forward_features(sd, x, heads=TINY["num_attention_heads"])
    assert ours.shape == (2, 64)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match="unexpected key"):
        from_videomae_v2({**sd, "blocks.0.gamma_1": torch.ones(64)})


def test_distance_equals_cdfvd_compute_fvd_from_stats(tmp_path):
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((30, 12)), rng.standard_normal((24, 12)) * 1.3 + 0.2
    states = []
    for x in (real, fake):
        states.append(FrechetState(12, "N").update(x))
    value = FVD(get_protocol("fvd/videomae")).compute(*states)["value"]
    assert value == pytest.approx(cdfvd_fvd(real, fake), rel=1e-6)


def test_clip_rule_and_weights():
    protocol = get_protocol("fvd/videomae")
    real = protocol.frame_indices(40, "real", 0, "a/b.mp4")
    assert list(protocol.frame_indices(40, "fake", 0, "a/b.mp4")) == list(real)  # both sets: a random clip
    assert len(real) == 16 and list(np.diff(real)) == [1] * 15
    assert protocol.divisor == "N" and protocol.dim == 1408 and protocol.resolution == 256
    with pytest.raises(FileNotFoundError, match="--detector fvd=PATH"):
        load_videomae("pretrained", 0, tiny=True, protocol="fvd/videomae")
    model, info = load_videomae("random-init", 3, tiny=True, protocol="fvd/videomae")
    again = load_videomae("random-init", 3, tiny=True, protocol="fvd/videomae")[1]
    assert info.sha256 == again.sha256 and info.identifier == "random-init:videomae-tiny:seed=3"
    assert isinstance(model, VideoMAEFeatures) and model.dim == 64


@pytest.mark.slow
def test_evaluate_scores_content_debiased_fvd_with_the_tiny_videomae(tmp_path):
    make_folder(tmp_path / "real", 4, 18, size=(32, 32), seed=0)
    make_folder(tmp_path / "fake", 4, 18, size=(32, 32), seed=1, tint=50.0)
    out = tmp_path / "eval.json"
    evaluate(EvalConfig(real=str(tmp_path / "real"), fake=str(tmp_path / "fake"), metrics=("fvd",),
                        protocols=(("fvd", "fvd/videomae"),), tiny_i3d=True, bootstrap=10, workers=0, out=str(out),
                        progress=False))
    fvd = json.loads(out.read_text())["metrics"]["fvd"]
    assert fvd["protocol"]["name"] == "fvd/videomae" and fvd["n_real"] == fvd["n_fake"] == 4
    assert math.isfinite(fvd["value"]) and fvd["value"] > 0
    assert fvd["detector"]["identifier"] == "random-init:videomae-tiny:seed=0"
