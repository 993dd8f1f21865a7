"""Training a latent-video baseline: its :class:`~baselines.recipe.Recipe`'s step on the shared loop
(:mod:`ophora.training.loop`), and the model folder it writes.

Both baselines are DiT-style denoisers on the latents of a per-frame SD VAE (``AutoencoderKL``, scaling 0.18215),
trained with the DDPM epsilon objective (plus IDDPM's VLB with a learned variance, :mod:`baselines.diffusion`).

Run folder (``train_baseline(recipe, manifest, out, spec)``), the same layout as an Ophora stage::

    run.json                 generator, preset (name, fingerprint, full config), manifest and its sha256
    log.csv, loss.png        one row per optimizer step (ophora.training.logs)
    base/                    tiny presets: the built frozen parts (VAE fitted to the clips, T5, DINO)
    cache/                   the latent cache (baselines.clips)
    checkpoints/step_NNNNNNN ophora.training.checkpoint (model, optimizer, LR schedule, RNG states, step;
                             safetensors + JSON, never a pickle)
    model/                   transformer/ (diffusers format), scheduler/, the frozen parts (or their pretrained
                             references), baseline_model.json

Exact resume: the data order (``BatchPlan``) and every random draw of step ``s`` (window start and flip, images,
posterior sample, timesteps, noise, caption dropout) come from generators seeded by (seed, s, process), and the
checkpoint holds model, optimizer, LR schedule, EMA and RNG states, so a killed and resumed run ends with the same
weights as an uninterrupted one, bit for bit on CPU. With ``train.ema_decay`` the model folder holds the EMA
weights (``"weights": "ema"`` in its info), so sampling uses them, as Endora's and Open-Sora's samplers do.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler

from baselines.clips import TrainClip, build_cache, read_training_clips
from baselines.frozen import seeded, vae_scaling
from baselines.presets import TrainSpec, spec_fingerprint
from baselines.recipe import Recipe
from ophora.data.atomic import atomic_dir
from ophora.hashing import sha256_file
from ophora.seeding import derive_seed
from ophora.training import checkpoint as ckpt
from ophora.training import loop
from ophora.training.data import BatchPlan
from ophora.training.distributed import make_accelerator
from ophora.training.logs import plot_loss
from ophora.training.objective import sample_timesteps

__all__ = ["train_baseline", "read_baseline_info", "INFO_NAME", "MODEL_NAME"]

INFO_NAME, MODEL_NAME, CACHE = "baseline_model.json", "model", "cache"


def _run_record(recipe: Recipe, spec, manifest: Path, kind: str) -> dict:
    learned = {"learn_sigma": True} if spec.diffusion.learn_sigma else {}  # absent: fixed variance (older runs)
    return {"generator": recipe.name, "preset": spec.name, "preset_fingerprint": spec_fingerprint(spec),
            "manifest_kind": kind, **learned, "manifest": str(manifest.resolve()),
            "manifest_sha256": sha256_file(manifest)}


def train_baseline(recipe: Recipe, manifest: str | os.PathLike, out: str | os.PathLike, spec,
                   stop_after: int | None = None, progress: bool = False) -> Path:
    """Train (or resume, or return at once when finished) a baseline on ``manifest`` into ``out``.

    Returns ``out/model``, or after ``stop_after`` steps of this call the latest checkpoint (a killed job)."""
    manifest, out = Path(manifest), Path(os.path.abspath(out))
    clips, kind = read_training_clips(manifest)
    record = _run_record(recipe, spec, manifest, kind)
    loop.check_same_run(out, record, "a run folder or checkpoint of another preset, generator or manifest cannot "
                                     "be resumed; choose another out folder")
    if (out / MODEL_NAME / INFO_NAME).is_file():
        return out / MODEL_NAME
    return _Session(recipe, spec, clips, out, record, progress).run_steps(stop_after)


class _Session:
    """One call of train: frozen parts, cache, model, optimizer, restored state, and the step's loss."""

    def __init__(self, recipe: Recipe, spec, clips: list[TrainClip], out: Path, record: dict, progress: bool):
        self.recipe, self.spec, self.out, self.record, self.progress = recipe, spec, out, record, progress
        train = spec.train
        self.acc = make_accelerator(mixed_precision=train.mixed_precision)
        with self.acc.main_process_first():
            self.frozen = recipe.frozen(spec, clips, out / "base")
            for part in self.frozen.values():
                if isinstance(part, torch.nn.Module):
                    part.to(self.acc.device)  # encode the cache on the accelerator
            cache_record = {"generator": recipe.name, "preset_fingerprint": record["preset_fingerprint"],
                            "manifest_sha256": record["manifest_sha256"], "frozen": self.frozen["record"]}
            self.cache = build_cache(recipe, spec, self.frozen, clips, out / CACHE, cache_record, progress)
        self.scheduler = DDPMScheduler(**spec.diffusion.scheduler_config())
        model = seeded(derive_seed(train.seed, "init"), lambda: recipe.build_model(spec))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=train.learning_rate, betas=(train.adam_beta1, train.adam_beta2),
                                      weight_decay=train.weight_decay)
        self.lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=train.lr_warmup_steps)
        self.ema = loop.make_ema(model, train.ema_decay)
        self.model, self.optimizer = loop.prepare(self.acc, model, optimizer, micro_batch=train.batch_size)
        loop.write_run_record(self.acc, out, {**record, "skipped_clips": self.cache.skipped}, spec, train.seed)
        parts = loop.checkpointed(self.model, self.optimizer, self.lr_schedule, self.ema)
        self.start = loop.restore(self.acc, out, parts)["step"]
        # the data order: a pure function of (seed, step)
        self.plan = BatchPlan([(0, 0, 0)] * len(self.cache), train.batch_size * self.acc.num_processes, train.seed)

    def _loss(self, model, step: int, micro: int) -> torch.Tensor:
        """The recipe's loss on this process's share of step ``step`` (one micro-step per step)."""
        acc, train = self.acc, self.spec.train
        rank = acc.process_index
        indices = self.plan.batch(step)[rank * train.batch_size:(rank + 1) * train.batch_size]
        windows = torch.Generator().manual_seed(derive_seed(train.seed, "window", step, rank))
        drawn = self.cache.draw(indices, self.spec.data, windows, self.recipe.per_frame)
        drawn.pop("start"), drawn.pop("flipped")
        batch = {k: v.to(acc.device) for k, v in drawn.items()}
        generator = torch.Generator().manual_seed(derive_seed(train.seed, "local", step, rank))
        latents = self._latents(batch.pop("mean"), batch.pop("logvar"), generator)
        if "image_mean" in batch:
            images = torch.Generator().manual_seed(derive_seed(train.seed, "images", step, rank))
            batch["images"] = self._latents(batch.pop("image_mean"), batch.pop("image_logvar"), images)
        shared = torch.Generator().manual_seed(derive_seed(train.seed, "shared", step))
        batch["timesteps"] = _timesteps(latents.shape[0], acc, self.scheduler, train, shared, generator)
        loss, _ = self.recipe.loss(model, self.spec, self.scheduler, latents, batch, generator)
        return loss

    def _latents(self, mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A posterior sample, scaled: [B, T, C, h, w] moments -> [B, C, T, h, w] latents."""
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        sample = (mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise) * vae_scaling(self.frozen["vae"])
        return sample.permute(0, 2, 1, 3, 4).contiguous()

    def run_steps(self, stop_after: int | None) -> Path:
        train = self.spec.train
        steps = loop.Loop(self.acc, self.model, self.optimizer, self.lr_schedule, self.out, self.start,
                          train.max_steps, train.checkpoint_every, train.checkpoints_kept, train.max_grad_norm,
                          checkpoint_state={**self.record, "config": dataclasses.asdict(self.spec)}, ema=self.ema,
                          stop_after=stop_after, desc=self.recipe.name, progress=self.progress)
        if not steps.run(range(self.start, train.max_steps), self._loss, self.plan.global_batch):
            return ckpt.latest_checkpoint(self.out)
        return self._finish(train.max_steps)

    def _finish(self, step: int) -> Path:
        acc = self.acc
        acc.wait_for_everyone()
        model = acc.unwrap_model(self.model)
        if self.ema:
            self.ema.copy_to([p for p in model.parameters() if p.requires_grad])  # the model written is the EMA
        if acc.is_main_process:
            with atomic_dir(self.out / MODEL_NAME) as tmp:
                self.recipe.save_model(model, self.spec, self.frozen, tmp)
                self.scheduler.save_pretrained(tmp / "scheduler")
                info = {**self.record, "step": step, "config": dataclasses.asdict(self.spec),
                        "variance": "learned_range" if self.spec.diffusion.learn_sigma else "fixed_small",
                        "weights": "ema" if self.ema else "final",
                        "frozen": self.frozen["record"], "clips": len(self.cache),
                        "skipped_clips": len(self.cache.skipped)}
                (tmp / INFO_NAME).write_text(json.dumps(info, indent=2, default=str) + "\n")
            plot_loss(self.out)
        acc.wait_for_everyone()
        return self.out / MODEL_NAME


def _timesteps(batch: int, acc, scheduler, train: TrainSpec, shared, local) -> torch.Tensor:
    return sample_timesteps(batch, acc.process_index, acc.num_processes, scheduler.config.num_train_timesteps,
                            train.timestep_sampling == "stratified", shared, local).to(acc.device)


def read_baseline_info(model: str | os.PathLike, generator: str) -> dict:
    """``baseline_model.json`` of a model folder ``train`` wrote for ``generator``; clear errors otherwise."""
    path = Path(model) / INFO_NAME
    if not path.is_file():
        raise FileNotFoundError(f"not a {generator} model folder: expected {path.resolve()} (the model/ folder "
                                f"that {generator}'s train returns)")
    info = json.loads(path.read_text())
    if info.get("generator") != generator:
        raise ValueError(f"{model} holds a {info.get('generator')!r} model, not a {generator!r} one")
    return info
