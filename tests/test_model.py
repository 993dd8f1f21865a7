"""Presets, tiny components, model folders: validation errors, the offline tokenizer, diffusers round trips."""
from __future__ import annotations

import json

import pytest
import torch

from ophora.configs import ConfigError, load_preset, parse_overrides, preset_fingerprint, preset_names
from ophora.model import (
    ModelNotFoundError,
    base_model_dir,
    check_preset_matches,
    frozen_fingerprint,
    read_model_info,
    resolve_model_dir,
    save_base_model,
    transformer_sha256,
)
from ophora.model.tokenizer import builtin_corpus, train_t5_tokenizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny():
    return load_preset("tiny")


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny):
    return save_base_model(tiny, tmp_path_factory.mktemp("model") / "base")


def test_shipped_presets():
    assert {"tiny", "paper"} <= set(preset_names())


def test_paper_preset_is_the_released_recipe():
    paper = load_preset("paper")
    assert paper.model.pretrained == "THUDM/CogVideoX-2b" and paper.model.max_text_length == 226
    assert (paper.data.frames, paper.data.height, paper.data.width, paper.data.fps) == (49, 480, 720, 8.0)
    for stage, lr, steps in (("tpt", 1e-4, 65000), ("p2ft", 5e-5, 4500)):
        s = paper.stage(stage)
        assert (s.learning_rate, s.max_steps) == (lr, steps)
        assert (s.lr_scheduler, s.lr_warmup_steps) == ("cosine_with_restarts", 800)
        assert (s.adam_beta1, s.adam_beta2) == (0.9, 0.95)
        assert (s.weight_decay, s.max_grad_norm, s.mixed_precision, s.batch_size) == (1e-3, 1.0, "fp16", 8)
        assert s.gradient_checkpointing and s.checkpoint_every == 500 and s.loss == "v_prediction"
    sampling = paper.sampling
    assert (sampling.scheduler, sampling.timestep_spacing, sampling.steps) == ("dpm", "trailing", 50)
    assert sampling.guidance_scale == 6.0 and sampling.dynamic_cfg


@pytest.mark.parametrize("overrides, key, words", [
    ({"data.frames": 10}, "data.frames", "4k+1"),
    ({"data.height": 40}, "data.height", "multiple of 16"),
    ({"data.buckets": [[9, 32, 30]]}, "data.buckets[0].width", "multiple of 16"),
    ({"train.tpt.learnin_rate": 1e-3}, "train.tpt.learnin_rate", "did you mean 'learning_rate'"),
    ({"train.p2ft.max_steps": 0}, "train.p2ft.max_steps", "positive"),
    ({"train.tpt.batch_size": "eight"}, "train.tpt.batch_size", "expected a number"),
    ({"train.tpt.loss": "l1"}, "train.tpt.loss", "v_prediction"),
    ({"sampling.scheduler": "euler"}, "sampling.scheduler", "dpm"),
    ({"model.transformer.num_layer": 2}, "model.transformer.num_layer", "did you mean 'num_layers'"),
    ({"model.max_text_length": 64}, "model.transformer.max_text_seq_length", "must equal"),
    ({"colour": "red"}, "colour", "unknown key"),
])
def test_bad_presets_name_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        load_preset("tiny", overrides)
    assert info.value.key == key and words in str(info.value) and "tiny.yaml" in str(info.value)


def test_unknown_preset_and_bad_override():
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load_preset("tiyn")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.tpt.max_steps"])
    assert parse_overrides(["train.tpt.max_steps=6", "model.pretrained=/w/x"]) == {
        "train.tpt.max_steps": 6, "model.pretrained": "/w/x"}


def test_fingerprint_ignores_training_but_not_model(tiny):
    assert preset_fingerprint(load_preset("tiny", {"train.tpt.max_steps": 3})) == preset_fingerprint(tiny)
    assert preset_fingerprint(load_preset("tiny", {"model.seed": 1})) != preset_fingerprint(tiny)


def test_offline_tokenizer_is_t5_like():
    tokenizer = train_t5_tokenizer(builtin_corpus(), 128)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer("a phaco tip sculpts the nucleus", padding="max_length", max_length=48).input_ids
    assert len(ids) == 48 and ids.count(1) == 1 and ids[-1] == 0 and 2 not in ids  # one </s>, padded, no <unk>
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a phaco tip sculpts the nucleus"
    assert len(tokenizer) <= 128


def test_base_model_round_trips_through_diffusers(base, tiny):
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(base)
    assert isinstance(pipe.scheduler, CogVideoXDPMScheduler)
    assert pipe.transformer.config.num_layers == tiny.model.transformer["num_layers"]
    assert len(pipe.tokenizer) == pipe.text_encoder.config.vocab_size
    info = read_model_info(base)
    assert info["stage"] == "base" and info["preset_fingerprint"] == preset_fingerprint(tiny)
    rebuilt = CogVideoXPipeline.from_pretrained(base)  # same weights every load
    for a, b in zip(pipe.transformer.parameters(), rebuilt.transformer.parameters()):
        assert torch.equal(a, b)
    out = pipe("capsulorhexis", num_frames=9, height=32, width=32, num_inference_steps=2, output_type="np",
               max_sequence_length=tiny.model.max_text_length, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 9, 32, 32, 3)


def test_tiny_vae_posterior_is_nearly_deterministic(base):
    from diffusers import AutoencoderKLCogVideoX

    vae = AutoencoderKLCogVideoX.from_pretrained(base, subfolder="vae")
    with torch.no_grad():
        dist = vae.encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1).latent_dist
    assert torch.allclose(dist.logvar, torch.full_like(dist.logvar, -10.0))
    assert dist.mean.shape == (1, 4, 3, 4, 4)


def test_base_model_dir_builds_once_and_checks_the_preset(tmp_path, tiny, base):
    folder = base_model_dir(tiny, tmp_path / "b")
    stamp = (folder / "transformer" / "config.json").stat().st_mtime_ns
    assert base_model_dir(tiny, tmp_path / "b") == folder
    assert (folder / "transformer" / "config.json").stat().st_mtime_ns == stamp
    other = load_preset("tiny", {"model.seed": 1})
    with pytest.raises(ValueError, match="holds a model of preset 'tiny'"):
        check_preset_matches(other, base)


def test_missing_model_folder_names_the_expected_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "nowhere")):
        resolve_model_dir(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model_index.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="missing \\['transformer'"):
        resolve_model_dir(tmp_path / "half")


def test_hub_id_not_in_cache_says_how_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download THUDM/CogVideoX-2b"):
        resolve_model_dir("THUDM/CogVideoX-2b")


def test_hashes_follow_the_bytes(tmp_path, tiny, base):
    import shutil

    copy = shutil.copytree(base, tmp_path / "copy")
    assert transformer_sha256(copy) == transformer_sha256(base)
    assert frozen_fingerprint(copy) == frozen_fingerprint(base)
    from diffusers import CogVideoXTransformer3DModel

    transformer = CogVideoXTransformer3DModel.from_pretrained(copy, subfolder="transformer")
    with torch.no_grad():
        next(transformer.parameters()).add_(1e-3)
    transformer.save_pretrained(copy / "transformer")
    assert transformer_sha256(copy) != transformer_sha256(base)
    assert frozen_fingerprint(copy) == frozen_fingerprint(base)  # the transformer is not frozen
    config = json.loads((copy / "vae" / "config.json").read_text())
    (copy / "vae" / "config.json").write_text(json.dumps({**config, "scaling_factor": 1.0}))
    assert frozen_fingerprint(copy) != frozen_fingerprint(base)


def test_fitting_the_tiny_vae_learns_to_reconstruct(tiny):
    from diffusers import AutoencoderKLCogVideoX

    from ophora.model.vae_fit import fit_vae

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(**tiny.model.vae)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    disc = torch.stack([(x ** 2 + y ** 2 < r) * 1.6 - 0.8 for r in (0.2, 0.4, 0.6, 0.8)])  # [4, 32, 32]
    clips = disc[:, None, None].expand(4, 3, 9, 32, 32).clone()
    losses = fit_vae(vae, clips, steps=25, learning_rate=1e-2, batch_size=2)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())
    with torch.no_grad():
        means = vae.encode(clips).latent_dist.mean
    assert (means * vae.config.scaling_factor).std().item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.slow
def test_offline_tokenizer_is_the_same_in_every_process():
    import subprocess
    import sys

    script = ("from ophora.model.tokenizer import builtin_corpus, train_t5_tokenizer;"
              "print(train_t5_tokenizer(builtin_corpus(), 256).backend_tokenizer.to_str())")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] == train_t5_tokenizer(builtin_corpus(), 256).backend_tokenizer.to_str() + "\n"
    with pytest.raises(ValueError, match="vocab_size 50 is too small: the corpus alone has 85 characters"):
        train_t5_tokenizer(builtin_corpus(), 50)
