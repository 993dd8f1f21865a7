"""Benchmarks of the tiny preset on this CPU (outside the default test run): training steps/s and peak memory,
generation seconds per video.

Run with ``tox -e bench`` (or ``pytest tests/perf/test_perf_model.py --benchmark-only``). ``extra_info`` holds
the throughput unit and the process's peak resident memory (``ru_maxrss``) after the benchmark. The paper
preset's GPU memory is not measured here; README "Train and generate (Ophora)" quotes the recipe's figures.
"""
from __future__ import annotations

import resource
import shutil

import pytest
import torch

from ophora.configs import load_preset
from ophora.generation import plan_jobs
from ophora.generation.prompts import Prompt
from ophora.generation.sampler import _sample
from ophora.model import load_pipeline, load_transformer, noise_scheduler
from ophora.training.data import BatchPlan, PreparedSet, StepBatches
from ophora.training.demo import demo_data
from ophora.training.objective import diffusion_loss, latents_from_moments, sample_timesteps
from ophora.training.trainer import TrainRun, train

STEPS = 20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_data(tmp_path_factory.getbasetemp() / "tiny_demo")


def test_tiny_training_steps(benchmark, demo):
    """Optimizer steps of the tiny preset (batch 2, gradient checkpointing, v-prediction loss)."""
    preset = load_preset("tiny")
    stage = preset.stage("tpt")
    data = PreparedSet(demo.tpt_data)
    model = load_transformer(demo.base)
    model.enable_gradient_checkpointing()
    model.train()
    scheduler = noise_scheduler(demo.base)
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.learning_rate, betas=(0.9, 0.95))
    batches = StepBatches(data, BatchPlan([i.bucket for i in data.items], stage.batch_size, 0), 0, STEPS, 0,
                          stage.batch_size)

    def run_steps():
        for step in range(STEPS):
            mean, logvar, embeds = batches[step]
            g = torch.Generator().manual_seed(step)
            latents = latents_from_moments(mean, logvar, data.plan["scaling_factor"], g)
            t = sample_timesteps(latents.shape[0], 0, 1, 1000, True, g, g)
            loss = diffusion_loss(model, scheduler, latents, embeds, t, torch.randn(latents.shape, generator=g))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()

    benchmark.pedantic(run_steps, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(items=STEPS, unit="steps", peak_rss_mib=round(_peak_rss_mib(), 1))


def test_tiny_training_run(benchmark, demo, tmp_path):
    """A whole 20-step TPT run: setup, steps, one checkpoint, the loss plot and the final diffusers folder."""
    preset = load_preset("tiny", {"train.tpt.max_steps": STEPS, "train.tpt.checkpoint_every": STEPS})

    def run():
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        train(TrainRun("tpt", preset, demo.tpt_data, tmp_path / "run", progress=False))

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(items=STEPS, unit="steps", peak_rss_mib=round(_peak_rss_mib(), 1))


@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_generation(benchmark, demo, batch):
    """Videos of 9 frames at 32x32 with the tiny preset's sampler (DPM, 4 steps, guidance 6)."""
    preset = load_preset("tiny")
    pipeline = load_pipeline(demo.base, preset.sampling)
    pipeline.set_progress_bar_config(disable=True)
    jobs = plan_jobs([Prompt(0, "Phacoemulsification of a dense brunescent cataract.")], batch, seed=0)
    frames = benchmark.pedantic(_sample, args=(pipeline, jobs, preset, "cpu"), rounds=5, warmup_rounds=1)
    assert frames.shape == (batch, 9, 32, 32, 3)
    benchmark.extra_info.update(items=batch, unit="videos", peak_rss_mib=round(_peak_rss_mib(), 1))
