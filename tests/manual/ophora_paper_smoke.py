"""Smoke run of the Ophora paper preset's code at CogVideoX-2b size on a CPU (not part of the test suite; about
7 minutes, 19 GB of memory and 45 GB of disk on 2 cores). Run from the repository root:

    python tests/manual/ophora_paper_smoke.py [FOLDER]

CogVideoX-2b's weights cannot be fetched here, so :func:`make_stand_in` writes a diffusers pipeline folder in
their place, with CogVideoX-2b's architecture and seeded random weights: the transformer (1.69 billion
parameters) and the VAE with diffusers' default arguments, which are CogVideoX-2b's; the 2b's scheduler settings;
a T5 encoder of T5-XXL's width (d_model 4096, the transformer's text input) cut from 24 blocks to 2, because the
full 4.8-billion-parameter encoder would need 19 GB in float32 beside the transformer; and the suite's offline
tokenizer, as no SentencePiece model can be fetched. :func:`run` then drives the command-line tools with
``--config paper --set model.pretrained=<the stand-in>``, on OphSim clips:

- ``accelerate launch --config_file ophora/configs/accelerate/ddp.yaml --num_processes 2 -m ophora.prepare``:
  the stand-in VAE and T5 encode 4 clips in 2 shards, one per process;
- the same launch of ``ophora.train --stage tpt``: DDP over 2 processes (gloo on a CPU), LoRA rank 128 (the
  preset's option for a 16-24 GB GPU; full AdamW on 1.69 billion parameters needs about 27 GB per process),
  2 steps of batch 1 per process; then ``--stage p2ft`` from the TPT model for 1 step;
- ``python -m ophora.generate``: one video with dynamic CFG and the DPM scheduler, 2 denoising steps, in one
  process (two float32 pipelines of this size do not fit in 24 GB beside each other).

To fit a CPU, clips are 9 frames of 96x144 instead of 49 of 480x720, sampling runs in float32, and the preset's
fp16 training is recorded as fp32 (CPU autocast has no fp16). Training peaked at about 19 GB of memory for the two
processes. It checks the code path at CogVideoX-2b size and the files it writes, not numbers.
``FOLDER/smoke.json`` records the timings and checks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

DDP = Path(__file__).resolve().parents[2] / "ophora" / "configs" / "accelerate" / "ddp.yaml"
GEOMETRY = ["--set", "data.frames=9", "--set", "data.height=96", "--set", "data.width=144",
            "--set", "prepare.shard_size=2"]
SCHEDULER_2B = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
                "num_train_timesteps": 1000, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                "set_alpha_to_one": True, "snr_shift_scale": 3.0, "steps_offset": 0, "timestep_spacing": "trailing"}
T5_XXL_WIDTH = {"d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 2,
                "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "dense_act_fn": "gelu_new",
                "is_gated_act": True, "tie_word_embeddings": False}
PROMPT = "The surgeon tears a round capsulorhexis with Utrata forceps under viscoelastic."


def make_stand_in(out: Path) -> Path:
    """A CogVideoX-2b-shaped pipeline folder with seeded random weights (see the module docstring)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from ophora.model.tokenizer import builtin_corpus, train_t5_tokenizer

    if (out / "model_index.json").is_file():
        return out
    torch.manual_seed(0)
    tokenizer = train_t5_tokenizer(builtin_corpus(), 256)
    pipeline = CogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=T5EncoderModel(T5Config(vocab_size=32128, **T5_XXL_WIDTH)),
        vae=AutoencoderKLCogVideoX(), transformer=CogVideoXTransformer3DModel(),
        scheduler=CogVideoXDDIMScheduler(**SCHEDULER_2B))
    tmp = out.with_name(out.name + ".tmp")
    pipeline.save_pretrained(tmp)
    tmp.rename(out)
    return out


def make_clips(out: Path) -> Path:
    """An OphSim instruction set of 4 clips (240x360, 24 frames at 8 fps)."""
    from ophora.data import manifests
    from ophora.sim.world import WorldConfig, build_world

    world = out / "world"
    if not (world / "ophora_instructions" / "instructions.csv").is_file():
        build_world(WorldConfig(videos=1, seed=3, frames=24, size=(240, 360)), world, workers=1, progress=False)
    clips = manifests.read_instruction_set(world / "ophora_instructions" / "instructions.csv")[:4]
    return manifests.write_instruction_set(world / "ophora_instructions" / "four.csv", clips)


def _timed(record: dict, name: str, command: list[str]) -> None:
    """Run ``command`` (OMP_NUM_THREADS=1 per process), record its wall time, fail on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    record["seconds"][name] = round(time.perf_counter() - start, 1)
    print(f"{name}: {record['seconds'][name]} s", flush=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({' '.join(command)}):\n{result.stderr[-4000:]}")


def launch(module: str, args: list[str]) -> list[str]:
    """``accelerate launch`` with the shipped DDP config, 2 processes (on a CPU: gloo, one thread each)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP), "--num_processes", "2",
            "-m", module, *args]


def run(folder: Path) -> dict:
    from diffusers import CogVideoXPipeline

    from ophora.data.atomic import atomic_write_text
    from ophora.data.manifests import read_generated
    from ophora.data.video import probe, read_video
    from ophora.training.logs import read_log

    folder.mkdir(parents=True, exist_ok=True)
    record: dict = {"seconds": {}, "checks": {}}
    start = time.perf_counter()
    stand_in = make_stand_in(folder / "cogvideox-2b-stand-in")
    record["seconds"]["stand-in"] = round(time.perf_counter() - start, 1)
    manifest = make_clips(folder)
    paper = ["--config", "paper", "--set", f"model.pretrained={stand_in}"] + GEOMETRY
    _timed(record, "prepare", launch("ophora.prepare", paper + ["--manifest", str(manifest), "--out",
                                                                str(folder / "prep"), "--no-progress"]))
    recipe = ["--set", "train.{s}.lora_rank=128", "--set", "train.{s}.batch_size=1", "--set",
              "train.{s}.lr_warmup_steps=1", "--set", "train.{s}.dataloader_workers=0", "--set",
              "train.{s}.checkpoints_kept=1", "--set", "train.{s}.max_steps={n}", "--set",
              "train.{s}.checkpoint_every={n}", "--no-progress"]
    tpt = [a.format(s="tpt", n=2) for a in recipe] + ["--stage", "tpt", "--out", str(folder / "tpt")]
    p2ft = [a.format(s="p2ft", n=1) for a in recipe] + ["--stage", "p2ft", "--out", str(folder / "p2ft"),
                                                         "--init", str(folder / "tpt")]
    data = ["--data", str(folder / "prep")]
    _timed(record, "train tpt", launch("ophora.train", paper + data + tpt))
    _timed(record, "train p2ft", launch("ophora.train", paper + data + p2ft))
    (folder / "prompts.txt").write_text(PROMPT + "\n")
    _timed(record, "generate", [sys.executable, "-m", "ophora.generate", "--model", str(folder / "p2ft" / "model"),
                                "--prompts", str(folder / "prompts.txt"), "--out", str(folder / "videos"),
                                "--steps", "2", "--set", "sampling.dtype=float32", "--seed", "7", "--no-progress"])
    checks = record["checks"]
    checks["tpt_loss"] = [row["loss"] for row in read_log(folder / "tpt")]
    pipe = CogVideoXPipeline.from_pretrained(folder / "p2ft" / "model")
    checks["transformer_parameters"] = sum(p.numel() for p in pipe.transformer.parameters())
    checks["transformer_layers"] = pipe.transformer.config.num_layers
    checks["scheduler"] = type(pipe.scheduler).__name__ + "/" + pipe.scheduler.config.timestep_spacing
    info = json.loads((folder / "p2ft" / "model" / "ophora_model.json").read_text())
    checks["model_info"] = {k: info.get(k) for k in ("preset", "stage", "step", "loss", "precision")}
    videos = read_generated(folder / "videos")
    video = read_video(videos[0].path)
    checks["video_shape"] = list(video.shape)
    checks["video_fps"] = probe(videos[0].path).fps
    checks["manifest_seed"] = videos[0].seed
    assert checks["transformer_parameters"] > 1.6e9 and checks["transformer_layers"] == 30, checks
    assert checks["model_info"]["stage"] == "p2ft" and checks["model_info"]["precision"] == "fp32", checks
    assert checks["video_shape"] == [9, 96, 144, 3] and checks["video_fps"] == 8.0, checks
    atomic_write_text(folder / "smoke.json", json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ophora_paper_smoke")), indent=2))
