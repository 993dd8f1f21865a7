"""The baselines' released mechanisms (issue 17): Endora's four-layer DINO prior with 1 - Pearson, joint
image-video batches, random time windows with flips drawn from the seed, and EMA weights as the sampled model
(Endora and Bora)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from baselines.clips import LatentCache
from baselines.endora import EndoraDenoiser, EndoraGenerator, _latte, load_endora_spec, pearson_pairs, prior_loss
from baselines.presets import DataSpec
from ophora.training.logs import read_log

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RELEASED = {"vae.fit_steps": 5, "vae.fit_batch_size": 4, "train.batch_size": 2, "data.frames": 8,
            "data.window": "random", "data.flip": True, "data.image_num": 2, "prior.projection": "conv",
            "prior.layers": [0, 1], "prior.dino_layers": [0, 1], "train.ema_decay": 0.5}


def _identity_convs(pairs: int, width: int) -> nn.ModuleList:
    convs = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(pairs))
    for conv in convs:
        nn.init.zeros_(conv.bias)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(width)[:, :, None, None])
    return convs


def test_conv_prior_is_one_minus_pearson_over_tokens_and_channels_averaged_over_pairs():
    g = torch.Generator().manual_seed(0)
    dino = torch.randn(3, 4, 16, 5, generator=g)  # 3 frames, 4 layer pairs, 4x4 tokens, width 5
    convs = _identity_convs(4, 5)
    same = [dino[:, k] for k in range(4)]
    assert pearson_pairs(same, dino, convs).item() == pytest.approx(0.0, abs=1e-5)
    assert pearson_pairs([-h for h in same], dino, convs).item() == pytest.approx(2.0, abs=1e-5)
    noisy = [dino[:, k] + torch.randn(3, 16, 5, generator=g) for k in range(4)]
    expected = np.mean([1 - np.corrcoef(noisy[k][f].flatten().numpy(), dino[f, k].flatten().numpy())[0, 1]
                        for k in range(4) for f in range(3)])
    assert pearson_pairs(noisy, dino, convs).item() == pytest.approx(expected, abs=1e-5)
    # the projection is on the DINO side: scaling its output does not change r, a channel mix does
    with torch.no_grad():
        convs[0].weight.mul_(3.0)
    assert pearson_pairs(noisy, dino, convs).item() == pytest.approx(expected, abs=1e-5)


def test_paper_endora_preset_is_the_release():
    spec = load_endora_spec("paper")
    assert (spec.prior.projection, spec.prior.layers, spec.prior.dino_layers) == ("conv", (2, 5, 8, 11),
                                                                                  (2, 5, 8, 11))
    assert (spec.data.window, spec.data.flip, spec.data.image_num) == ("random", True, 8)
    assert spec.vae.pretrained == "sd-vae-ft-mse" and spec.train.ema_decay == 0.9999
    earlier = load_endora_spec("paper", {"prior.projection": "mlp", "prior.layer": 5, "data.window": "first",
                                         "data.image_num": 0, "vae.pretrained": "sd-vae-ft-ema",
                                         "train.ema_decay": None})
    assert earlier.prior.projection == "mlp"


def _tiny_denoiser(projection: str = "conv") -> EndoraDenoiser:
    spec = load_endora_spec("tiny", {"data.frames": 8, "prior.projection": projection, "prior.layers": [0, 1],
                                     "prior.dino_layers": [0, 1]})
    torch.manual_seed(0)
    return EndoraDenoiser(_latte(spec, (4, 8)), spec.prior, dino_width=32)


def test_conv_denoiser_keeps_one_hidden_state_per_pair_and_trains_its_convs():
    model = _tiny_denoiser()
    noisy, t = torch.randn(2, 4, 8, 8, 8), torch.tensor([10, 500])
    dino = torch.randn(2, 8, 2, 16, 32)  # [B, T, pairs, tokens, DINO width]
    eps, prior = prior_loss(model, noisy, t, dino)
    assert eps.shape == noisy.shape and len(model._hidden) == 2 and 0 < prior.item() < 2
    prior.backward()
    assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for conv in model.prior_head)


def test_joint_images_pass_the_spatial_blocks_only_at_the_samples_timestep():
    model = _tiny_denoiser().eval()
    video, images, t = torch.randn(2, 4, 8, 8, 8), torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 500])
    with torch.no_grad():
        joint, _ = model(video, t, images)
        alone = model.denoise(images, t, temporal=False)
        other, _ = model(torch.randn_like(video), t, images)
        video_only, _ = model(video, t)
        # each image is denoised on its own: one image alone gives the same output
        single = model.denoise(images[:, :, :1], t, temporal=False)
    assert joint.shape == (2, 4, 11, 8, 8)
    torch.testing.assert_close(joint[:, :, 8:], alone)
    torch.testing.assert_close(other[:, :, 8:], alone)  # the video does not reach the images
    torch.testing.assert_close(joint[:, :, :8], video_only)
    torch.testing.assert_close(single, alone[:, :, :1], rtol=1e-4, atol=1e-5)


@pytest.fixture()
def cache(tmp_path):
    """A latent cache of three clips of 12, 10 and 9 frames, with mirrored tensors and a whole-clip tensor."""
    tensors, items = {}, []
    for n, (key, frames) in enumerate((("a", 12), ("b", 10), ("c", 9))):
        ramp = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1, 1).expand(frames, 2, 2, 2) + 100 * n
        own = {"mean": ramp, "logvar": ramp - 1, "dino": ramp[:, 0, 0, 0], "caption": torch.full((3,), float(n)),
               "flip.mean": -ramp, "flip.logvar": -ramp - 1, "flip.dino": -ramp[:, 0, 0, 0]}
        tensors.update({f"{key}/{k}": v.contiguous() for k, v in own.items()})
        items.append({"key": key, "text": key, "shard": 0, "tensors": [f"{key}/{k}" for k in own]})
    (tmp_path / "shards").mkdir()
    save_file(tensors, str(tmp_path / "shards" / "00000.safetensors"))
    (tmp_path / "index.json").write_text(json.dumps({"items": items, "skipped": []}))
    return LatentCache(tmp_path)


def test_random_windows_and_flips_are_drawn_from_the_seed(cache):
    data = DataSpec(frames=8, height=8, width=8, frame_interval=1, window="random", flip=True, image_num=2)
    draws = [cache.draw([0, 1, 2], data, torch.Generator().manual_seed(s), ("dino",)) for s in (7, 7, 8)]
    assert all(torch.equal(draws[0][k], draws[1][k]) for k in draws[0])
    assert any(not torch.equal(draws[0][k], draws[2][k]) for k in ("start", "flipped", "image_mean"))
    seen = set()
    for seed in range(40):
        batch = cache.draw([0, 1, 2], data, torch.Generator().manual_seed(seed), ("dino",))
        for b, (start, flip) in enumerate(zip(batch["start"].tolist(), batch["flipped"].tolist())):
            assert 0 <= start <= (12, 10, 9)[b] - 8
            sign = -1.0 if flip else 1.0
            window = sign * (torch.arange(start, start + 8, dtype=torch.float32) + 100 * b)
            assert torch.equal(batch["mean"][b, :, 0, 0, 0], window) and torch.equal(batch["dino"][b], window)
            assert batch["caption"][b].tolist() == [float(b)] * 3  # whole-clip tensors are not cut
            seen.add((b, start, flip))
        assert batch["image_mean"].shape == (3, 2, 2, 2, 2) and (batch["image_mean"] >= 0).all()  # not mirrored
    assert {(0, s, f) for s in range(5) for f in (False, True)} <= seen  # every start and both sides occur
    first = DataSpec(frames=8, height=8, width=8, frame_interval=1)  # earlier behaviour: no draws at all
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    fixed = cache.draw([0, 1], first, generator, ("dino",))
    assert fixed["start"].tolist() == [0, 0] and not fixed["flipped"].any()
    assert torch.equal(generator.get_state(), before) and "image_mean" not in fixed
    torch.testing.assert_close(fixed["mean"], torch.stack([cache.load(i)["mean"][:8] for i in (0, 1)]))


@pytest.fixture(scope="module")
def released_run(four_clip_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("endora_released") / "run"
    return out, EndoraGenerator().train(four_clip_world[1], out, overrides={**RELEASED, "train.max_steps": 6,
                                                                            "train.checkpoint_every": 3})


def test_released_endora_trains_and_writes_the_ema_weights(released_run):
    out, model = released_run
    info = json.loads((model / "baseline_model.json").read_text())
    assert info["weights"] == "ema" and info["config"]["prior"]["projection"] == "conv"
    assert all(np.isfinite(r["loss"]) for r in read_log(out))
    cache = LatentCache(out / "cache")
    names = {n.split("/", 1)[1] for n in cache.items[0]["tensors"]}
    assert names == {"mean", "logvar", "dino", "flip.mean", "flip.logvar", "flip.dino"}
    assert cache.load(0)["dino"].shape[1:] == (2, 16, 32) and len(cache.load(0)["mean"]) == 16  # all 16 frames
    saved = load_file(model / "transformer" / "diffusion_pytorch_model.safetensors")
    last = out / "checkpoints" / "step_0000006"
    raw = {k[len("transformer."):]: v for k, v in load_file(last / "model.safetensors").items()
           if k.startswith("transformer.")}
    ema = list(load_file(last / "ema.safetensors").values())
    trainable = [k for k in saved if not k.startswith("caption_projection") and k in raw
                 and not torch.equal(saved[k], raw[k])]
    assert trainable, "the written transformer must differ from the raw weights"
    assert all(any(v.shape == saved[k].shape and torch.equal(v, saved[k]) for v in ema) for k in trainable)


def test_released_endora_resumes_bit_for_bit(four_clip_world, released_run, tmp_path):
    straight = released_run[1]
    stopped = EndoraGenerator().train(four_clip_world[1], tmp_path / "r", overrides={
        **RELEASED, "train.max_steps": 6, "train.checkpoint_every": 3}, stop_after=4)
    assert stopped.name == "step_0000003"
    resumed = EndoraGenerator().train(four_clip_world[1], tmp_path / "r", overrides={
        **RELEASED, "train.max_steps": 6, "train.checkpoint_every": 3})
    for name in ("transformer/diffusion_pytorch_model.safetensors", "prior_head.safetensors"):
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_released_bora_samples_from_the_ema_of_random_flipped_windows(four_clip_world, tmp_path):
    from baselines.bora import BoraGenerator, load_bora_spec

    paper = load_bora_spec("paper")
    assert (paper.data.window, paper.data.flip, paper.train.ema_decay) == ("random", True, 0.9999)
    with pytest.raises(Exception, match="image_num"):
        load_bora_spec("tiny", {"data.image_num": 2})
    settings = {"vae.fit_steps": 5, "vae.fit_batch_size": 4, "train.batch_size": 2, "data.frames": 8,
                "data.window": "random", "data.flip": True, "train.ema_decay": 0.5, "train.max_steps": 4,
                "train.checkpoint_every": 4}
    model = BoraGenerator().train(four_clip_world[1], tmp_path / "run", overrides=settings)
    assert json.loads((model / "baseline_model.json").read_text())["weights"] == "ema"
    saved = load_file(model / "transformer" / "diffusion_pytorch_model.safetensors")
    last = tmp_path / "run" / "checkpoints" / "step_0000004"
    raw, ema = load_file(last / "model.safetensors"), list(load_file(last / "ema.safetensors").values())
    moved = [k for k in saved if k in raw and not torch.equal(saved[k], raw[k])]
    assert moved and all(any(v.shape == saved[k].shape and torch.equal(v, saved[k]) for v in ema) for k in moved)
    names = {n.split("/", 1)[1] for n in LatentCache(tmp_path / "run" / "cache").items[0]["tensors"]}
    assert names == {"mean", "logvar", "caption", "caption_mask", "flip.mean", "flip.logvar"}
