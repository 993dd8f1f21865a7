"""Endora baseline (tiny preset, CPU, an OphSim world): training, the DINO prior, exact resume, generation into
the suite's folder format, and scoring by the evaluation harness."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import baselines
from baselines.clips import build_cache, read_training_clips
from baselines.endora import EndoraGenerator, EndoraRecipe, load_endora_spec, prior_loss
from baselines.training import INFO_NAME
from ophora.configs import ConfigError
from ophora.data import manifests
from ophora.data.video import probe, read_video
from ophora.generation.prompts import Prompt
from ophora.training.logs import read_log

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = {"vae.fit_steps": 30, "vae.fit_batch_size": 8, "train.batch_size": 4}  # brief VAE fit, small batches


@pytest.fixture(scope="module")
def world(four_clip_world):
    return four_clip_world


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """Overfit four clips for 80 steps."""
    out = tmp_path_factory.mktemp("endora_run") / "run"
    model = baselines.get("endora").train(world[1], out, overrides={**FAST, "train.max_steps": 80,
                                                                    "train.checkpoint_every": 40})
    return out, model


def test_registry_builds_endora_and_it_is_a_video_generator():
    generator = baselines.get("endora")
    assert isinstance(generator, baselines.VideoGenerator) and isinstance(generator, EndoraGenerator)
    assert (generator.conditional, generator.stages) == (False, ("train",))


@pytest.mark.slow
def test_overfitting_four_clips_drives_the_loss_down(world, trained):
    out, model = trained
    losses = [row["loss"] for row in read_log(out)]
    assert len(losses) == 80 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    assert (out / "loss.png").is_file() and (model / "transformer" / "config.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000040", "step_0000080"]
    info = json.loads((model / INFO_NAME).read_text())
    assert info["generator"] == "endora" and info["step"] == 80 and info["clips"] == 4
    assert info["frozen"]["vae"]["mse_last_steps"] < info["frozen"]["vae"]["mse_first_step"]
    from diffusers import LatteTransformer3DModel

    latte = LatteTransformer3DModel.from_pretrained(model / "transformer")
    assert latte.config.video_length == 16 and latte.config.sample_size == 8  # 16 frames, 32 px / factor 4
    # idempotent: a finished folder returns its model at once
    assert baselines.get("endora").train(world[1], out, overrides={**FAST, "train.max_steps": 80}) == model


@pytest.mark.parametrize("projection, dino_shape", [("conv", (2, 16, 2, 16, 32)), ("mlp", (2, 16, 16))])
def test_the_dino_prior_is_active_finite_and_trains_the_projection(world, tmp_path, projection, dino_shape):
    """conv (the release, the tiny preset): per frame, 2 layer pairs x (4 x 4) tokens x DINO width 32;
    mlp (the earlier form): per frame, the channel-averaged (4 x 4) token map."""
    earlier = {"prior.projection": "mlp", "prior.layer": 1, "prior.hidden": 32} if projection == "mlp" else {}
    spec = load_endora_spec("tiny", {"vae.fit_steps": 0, **earlier})
    clips, _ = read_training_clips(world[1])
    recipe = EndoraRecipe()
    frozen = recipe.frozen(spec, clips, tmp_path / "base")
    cache = build_cache(recipe, spec, frozen, clips, tmp_path / "cache", {"test": 1})
    batch = cache.batch([0, 1])
    assert batch["dino"].shape == dino_shape
    model = recipe.build_model(spec)
    latents = batch["mean"].permute(0, 2, 1, 3, 4)
    eps, prior = prior_loss(model, latents, torch.tensor([10, 500]), batch["dino"])
    assert math.isfinite(prior.item()) and 0.05 < prior.item() < 2.0  # 1 - Pearson lies in [0, 2]
    prior.backward()
    grads = [p.grad for p in model.prior_head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and grads[0].abs().sum() > 0
    layer = spec.prior.layers[0] if projection == "conv" else spec.prior.layer
    hidden = model.transformer.transformer_blocks[layer].attn1.to_q.weight.grad
    assert hidden is not None and hidden.abs().sum() > 0  # the prior also reaches the transformer
    scheduler = __import__("diffusers").DDPMScheduler(**spec.diffusion.scheduler_config())
    total, parts = recipe.loss(model, spec, scheduler, latents, {**batch, "timesteps": torch.tensor([3, 900])},
                               torch.Generator().manual_seed(0))
    assert total.item() == pytest.approx(parts["mse"] + 0.5 * parts["prior"], rel=1e-5)
    assert parts["prior"] > 0


def test_killed_and_resumed_run_equals_uninterrupted_bit_for_bit(world, tmp_path):
    settings = {"vae.fit_steps": 5, "vae.fit_batch_size": 4, "train.max_steps": 6, "train.checkpoint_every": 3}
    straight = EndoraGenerator().train(world[1], tmp_path / "straight", overrides=settings)
    stopped = EndoraGenerator().train(world[1], tmp_path / "r", overrides=settings, stop_after=4)
    assert stopped.name == "step_0000003" and not (tmp_path / "r" / "model").exists()
    resumed = EndoraGenerator().train(world[1], tmp_path / "r", overrides=settings)
    for name in ("transformer/diffusion_pytorch_model.safetensors", "prior_head.safetensors"):
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_log(tmp_path / "straight")] == [r["loss"] for r in read_log(tmp_path / "r")]
    with pytest.raises(ValueError, match="another run"):  # a run folder of another preset is refused
        EndoraGenerator().train(world[1], tmp_path / "r", overrides={**settings, "prior.weight": 0.25})


def test_unknown_preset_keys_are_refused_with_the_key():
    with pytest.raises(ConfigError, match=r"train\.max_stepz.*did you mean 'max_steps'"):
        load_endora_spec("tiny", {"train.max_stepz": 3})
    with pytest.raises(ConfigError, match="unknown endora preset 'tinyy'"):
        load_endora_spec("tinyy")
    paper = load_endora_spec("paper")
    assert (paper.data.frames, paper.data.height, paper.data.frame_interval, paper.train.learning_rate) == \
        (16, 128, 3, 1e-4)
    assert paper.prior.weight == 0.5 and paper.prior.pretrained == "dino-vits8"


def test_generation_writes_the_requested_videos_deterministically(trained, tmp_path):
    _, model = trained
    prompts = [Prompt(0, "phacoemulsification"), Prompt(1, "capsulorhexis")]
    written = EndoraGenerator().generate(model, prompts, tmp_path / "a", videos_per_prompt=2, seed=7)
    assert [p.name for p in written] == ["00000_00.mp4", "00000_01.mp4", "00001_00.mp4", "00001_01.mp4"]
    info = probe(written[0])
    assert (info.num_frames, info.height, info.width, info.fps) == (16, 32, 32, 8.0)
    records = manifests.read_generated(tmp_path / "a")
    assert {r.generator for r in records} == {"endora"} and records[0].settings["conditional"] is False
    assert len(records[0].checkpoint_hash) == 64 and records[0].settings["steps"] == 20
    again = EndoraGenerator().generate(model, prompts[:1], tmp_path / "b", videos_per_prompt=2, seed=7)
    assert np.array_equal(read_video(again[1]), read_video(written[1]))  # same seed, same video
    assert not np.array_equal(read_video(written[0]), read_video(written[1]))  # other seed, other video
    assert EndoraGenerator().generate(model, prompts, tmp_path / "a", videos_per_prompt=2, seed=7) == []
    with pytest.raises(ValueError, match="other settings"):
        EndoraGenerator().generate(model, prompts, tmp_path / "a", videos_per_prompt=2, seed=7,
                                   overrides={"sampling.steps": 5})
    frames = read_video(written[0]).astype(float)
    assert frames.std() > 5  # not a flat image


@pytest.mark.slow
def test_the_harness_scores_a_generated_folder(world, trained, tmp_path, monkeypatch):
    from benchmarks.evaluate import EvalConfig, evaluate

    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    _, model = trained
    prompts = [Prompt(i, f"prompt {i}") for i in range(3)]
    EndoraGenerator().generate(model, prompts, tmp_path / "fake", videos_per_prompt=1, seed=0)
    result = evaluate(EvalConfig(real=str(world[1]), fake=str(tmp_path / "fake"), metrics=("fid", "fvd"),
                                 tiny_i3d=True, fid_frames=2, bootstrap=0, no_cache=True, progress=False))
    for name in ("fid", "fvd"):
        assert math.isfinite(result["metrics"][name]["value"]) and result["metrics"][name]["value"] >= 0
