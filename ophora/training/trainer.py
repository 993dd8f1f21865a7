"""Training of one Ophora stage, both scales (``python -m ophora.train``): the transformer's step on the shared
loop (:mod:`ophora.training.loop`).

A run folder holds ``run.json`` (what the run is: stage, preset, data, init, loss, provenance), ``log.csv`` and
``loss.png``, ``checkpoints/step_NNNNNNN/`` and, when finished, ``model/`` (a diffusers pipeline folder).
Randomness per micro-step (timesteps, noise, the VAE posterior sample) comes from generators seeded by
(seed, micro-step, process), and the data order from (seed, step), so a resumed run repeats an uninterrupted
one exactly: on CPU its weights are equal bit for bit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ophora.configs import Preset, StageConfig, preset_fingerprint
from ophora.model import (
    check_preset_matches,
    frozen_fingerprint,
    load_transformer,
    noise_scheduler,
    read_model_info,
    save_trained_model,
)
from ophora.seeding import derive_seed
from ophora.training import checkpoint as ckpt
from ophora.training import loop
from ophora.training.data import BatchPlan, PreparedSet, StepBatches
from ophora.training.distributed import effective_precision, make_accelerator
from ophora.training.logs import plot_loss
from ophora.training.loop import RUN_NAME
from ophora.training.objective import diffusion_loss, latents_from_moments, sample_timesteps

__all__ = ["TrainRun", "train", "resolve_init", "MODEL_NAME"]

MODEL_NAME = "model"


@dataclass(frozen=True)
class TrainRun:
    """One invocation. ``init``: a pipeline folder or a run folder (its ``model/``); default for TPT is the
    model the data were prepared with; P2FT needs a TPT run. ``stop_after`` leaves after that many optimizer
    steps without saving anything more (what a killed or pre-empted job does; ``resume`` then continues)."""

    stage: str
    preset: Preset
    data: Path
    out: Path
    init: Path | None = None
    resume: bool = False
    stop_after: int | None = None
    progress: bool = True


def resolve_init(stage: str, init: Path | None, data: PreparedSet) -> Path:
    """The pipeline folder whose transformer the stage starts from."""
    if init is None:
        if stage == "p2ft":
            raise ValueError("P2FT starts from a TPT run: pass --init TPT_RUN_DIR (or its model/ folder)")
        return Path(data.plan["model_dir"])
    init = Path(init)
    if (init / RUN_NAME).is_file():
        if not (init / MODEL_NAME / "model_index.json").is_file():
            raise FileNotFoundError(f"{init} has not finished: expected its final model at {init / MODEL_NAME}")
        init = init / MODEL_NAME
    info = read_model_info(init) or {}
    if stage == "p2ft" and info.get("stage", "tpt") != "tpt":
        raise ValueError(f"P2FT starts from a TPT model, but {init} holds a {info['stage']!r} model")
    return init


def _run_record(run: TrainRun, init: Path) -> dict:
    stage = run.preset.stage(run.stage)
    return {"stage": run.stage, "preset": run.preset.name, "preset_fingerprint": preset_fingerprint(run.preset),
            "data": str(run.data.resolve()), "init": str(init.resolve()), "loss": stage.loss,
            "timestep_sampling": stage.timestep_sampling}


def _check_run_folder(run: TrainRun, record: dict) -> None:
    """Refuse to mix two different runs in one folder, or to restart a run without --resume."""
    if not (run.out / RUN_NAME).is_file():
        return
    keys = ("stage", "preset_fingerprint", "data", "init", "loss", "timestep_sampling")
    loop.check_same_run(run.out, {k: record[k] for k in keys},
                        "a checkpoint from another preset or setup cannot be resumed; choose another --out")
    if not run.resume and (ckpt.latest_checkpoint(run.out) or (run.out / MODEL_NAME).exists()):
        raise ValueError(f"{run.out} already holds this run's checkpoints; pass --resume to continue it or "
                         f"choose another --out")


def _build_model(init: Path, stage: StageConfig):
    transformer = load_transformer(init)
    if stage.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if stage.lora_rank is not None:
        from peft import LoraConfig

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=stage.lora_rank, lora_alpha=stage.lora_alpha or stage.lora_rank,
                                           init_lora_weights=True,
                                           target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    transformer.train()
    return transformer


def _optimizer(model, stage: StageConfig):
    from diffusers.optimization import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=stage.learning_rate, betas=(stage.adam_beta1, stage.adam_beta2),
                                  eps=stage.adam_epsilon, weight_decay=stage.weight_decay)
    schedule = get_scheduler(stage.lr_scheduler, optimizer, num_warmup_steps=stage.lr_warmup_steps,
                             num_training_steps=stage.max_steps, num_cycles=stage.lr_num_cycles)
    return optimizer, schedule


class _Step:
    """Everything one micro-step needs, with its own seeded generators."""

    def __init__(self, run: TrainRun, accelerator, scheduler, scaling: float):
        self.stage = run.preset.stage(run.stage)
        self.accelerator, self.scheduler, self.scaling = accelerator, scheduler, scaling

    def loss(self, model, batch, micro: int) -> torch.Tensor:
        seed, acc = self.stage.seed, self.accelerator
        shared = torch.Generator().manual_seed(derive_seed(seed, "shared", micro))
        local = torch.Generator().manual_seed(derive_seed(seed, "local", micro, acc.process_index))
        mean, logvar, embeds = (t.to(acc.device) for t in batch)
        latents = latents_from_moments(mean, logvar, self.scaling, local)
        timesteps = sample_timesteps(latents.shape[0], acc.process_index, acc.num_processes,
                                     self.scheduler.config.num_train_timesteps,
                                     self.stage.timestep_sampling == "stratified", shared, local).to(acc.device)
        noise = torch.randn(latents.shape, generator=local, dtype=latents.dtype).to(acc.device)
        return diffusion_loss(model, self.scheduler, latents, embeds, timesteps, noise, self.stage.loss)


def train(run: TrainRun) -> Path:
    """Run (or resume) one stage; returns ``RUN/model`` when finished, else the latest checkpoint."""
    session = _Session(run)
    if session.start >= session.stage.max_steps and (run.out / MODEL_NAME / "model_index.json").is_file():
        return run.out / MODEL_NAME
    return session.run_steps()


class _Session:
    """One invocation of a stage: checks, model, optimizer and data set up, state restored on resume."""

    def __init__(self, run: TrainRun):
        self.run, self.stage = run, run.preset.stage(run.stage)
        stage = self.stage
        self.accelerator = make_accelerator(mixed_precision=stage.mixed_precision,
                                            gradient_accumulation_steps=stage.gradient_accumulation_steps)
        self.data = PreparedSet(run.data)
        self.init = resolve_init(run.stage, run.init, self.data)
        check_preset_matches(run.preset, self.init)
        self.record = {**_run_record(run, self.init), "precision": effective_precision(self.accelerator)}
        _check_run_folder(run, self.record)
        model = _build_model(self.init, stage)
        self.data.check_model(model.config, frozen_fingerprint(self.init))
        optimizer, self.lr_schedule = _optimizer(model, stage)
        self.ema = loop.make_ema(model, stage.ema_decay)
        self.model, self.optimizer = loop.prepare(self.accelerator, model, optimizer, stage.batch_size)
        self.step_fn = _Step(run, self.accelerator, noise_scheduler(self.init), self.data.plan["scaling_factor"])
        loop.write_run_record(self.accelerator, run.out, self.record, run.preset, stage.seed)
        parts = loop.checkpointed(self.model, self.optimizer, self.lr_schedule, self.ema)
        self.start = loop.restore(self.accelerator, run.out, parts, run.resume)["step"]

    def _loader(self, plan: BatchPlan):
        accum, acc = self.stage.gradient_accumulation_steps, self.accelerator
        steps = StepBatches(self.data, plan, self.start * accum, self.stage.max_steps * accum, acc.process_index,
                            self.stage.batch_size)
        return torch.utils.data.DataLoader(steps, batch_size=None, num_workers=self.stage.dataloader_workers)

    def run_steps(self) -> Path:
        run, stage, acc = self.run, self.stage, self.accelerator
        plan = BatchPlan([item.bucket for item in self.data.items], stage.batch_size * acc.num_processes, stage.seed)
        steps = loop.Loop(acc, self.model, self.optimizer, self.lr_schedule, run.out, self.start, stage.max_steps,
                          stage.checkpoint_every, stage.checkpoints_kept, stage.max_grad_norm,
                          checkpoint_state={**self.record, "config": asdict(run.preset)}, ema=self.ema,
                          stop_after=run.stop_after, desc=run.stage, progress=run.progress)
        if not steps.run(self._loader(plan), self.step_fn.loss, plan.global_batch):
            return ckpt.latest_checkpoint(run.out)
        return _finish(run, acc, self.model, self.ema, self.init, self.record, steps.step)


def _from_state(cls, config, state: dict):
    """A fresh float32 ``cls`` model holding ``state``'s tensors themselves (parameters built empty, then
    assigned): no second copy of a 1.7-billion-parameter transformer in memory. Half-precision tensors (ZeRO-3's
    gathered 16-bit weights) are cast to float32, as loading them into a float32 model did. Buffers are built as
    usual (CogVideoX's positional embeddings are not in the state dict)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls.from_config(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _finish(run: TrainRun, accelerator, model, ema, init: Path, record: dict, step: int) -> Path:
    """Save the final transformer (EMA weights when EMA is on, LoRA merged) as ``RUN/model``."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if ema:
        ema.copy_to([p for p in unwrapped.parameters() if p.requires_grad])
    if run.preset.stage(run.stage).lora_rank is not None:
        unwrapped.fuse_lora()
        unwrapped.unload_lora()
        state = unwrapped.state_dict()
    else:
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        final = _from_state(type(unwrapped), unwrapped.config, state)
        save_trained_model(run.out / MODEL_NAME, init, final, run.preset, run.stage, step=step,
                           weights="ema" if ema else "final",
                           **{k: record[k] for k in ("loss", "timestep_sampling", "precision", "data", "init")})
        plot_loss(run.out)
    accelerator.wait_for_everyone()
    return run.out / MODEL_NAME
