"""The training loop every generator shares (Ophora's stages, the baselines), with a model-specific loss.

A run folder holds ``run.json`` (the run record, written once by the main process), ``log.csv`` and ``loss.png``
(:mod:`ophora.training.logs`) and ``checkpoints/step_NNNNNNN/`` (:mod:`ophora.training.checkpoint`); the trainer
adds its final ``model/``. A trainer builds its model, optimizer and LR schedule, calls :func:`prepare`,
:func:`write_run_record` and :func:`restore`, then :meth:`Loop.run` with its micro-batches and loss.

**Exact resume.** The loop draws no random numbers itself: the caller's micro-batches and loss must depend only on
the micro-step index (data order and per-step generators seeded by (seed, step)), and a checkpoint restores model,
optimizer, LR schedule, EMA and RNG states, so a killed and resumed run ends with the weights of an uninterrupted
one (bit for bit on CPU). The classifier trainer (:mod:`downstream.train`) keeps its own loop but shares
:func:`restore`, :func:`write_run_record`, :func:`checkpoint_due` and the log.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm import tqdm

from ophora.results import write_json
from ophora.training import checkpoint as ckpt
from ophora.training.logs import TrainLog, plot_loss

__all__ = ["RUN_NAME", "Loop", "prepare", "checkpointed", "make_ema", "write_run_record", "check_same_run",
           "restore", "checkpoint_due"]

RUN_NAME = "run.json"


def check_same_run(out: Path, record: dict, hint: str) -> None:
    """Refuse a run folder whose ``run.json`` differs from ``record`` in any of ``record``'s keys; the error
    lists each (found, requested) pair and ends with ``hint``."""
    path = Path(out) / RUN_NAME
    if not path.is_file():
        return
    found = json.loads(path.read_text())
    changed = {k: (found.get(k), v) for k, v in record.items() if found.get(k) != v}
    if changed:
        raise ValueError(f"{out} holds another run ({changed}; found vs requested): {hint}")


def write_run_record(accelerator, out: Path, record: dict, config: Any, seed: int) -> None:
    """Write ``out/run.json`` (``record`` with config, seed and provenance) once: the main process, first call."""
    if accelerator.is_main_process and not (Path(out) / RUN_NAME).is_file():
        write_json(Path(out) / RUN_NAME, record, config=config, seed=seed)


def restore(accelerator, out: Path, parts: ckpt.Checkpointed, resume: bool = True) -> dict:
    """Load the latest complete checkpoint of ``out`` into ``parts`` (when ``resume``); its ``trainer_state.json``
    (``step`` and what the trainer saved), or ``{"step": 0}`` for a fresh start. A checkpoint that is not in the
    suite's format (a planted pickle, an accelerate checkpoint of earlier versions) is refused before anything
    is loaded (:class:`~ophora.training.checkpoint.CheckpointError`)."""
    latest = ckpt.latest_checkpoint(out) if resume else None
    return ckpt.load_checkpoint(accelerator, latest, parts) if latest else {"step": 0}


def prepare(accelerator, model, optimizer, micro_batch: int | None = None):
    """``accelerator.prepare`` model and optimizer.

    The LR schedule is not prepared (accelerate would step it once per process): the loop steps it once per
    optimizer step; it and the EMA are checkpointed through :func:`checkpointed`. No dataloader is prepared, so
    DeepSpeed is told the per-process ``micro_batch``."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None and micro_batch is not None:
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro_batch
    return accelerator.prepare(model, optimizer)


def checkpointed(model, optimizer, lr_schedule, ema=None) -> ckpt.Checkpointed:
    """What a training checkpoint holds: the prepared model and optimizer, the LR schedule and the EMA (if any)."""
    return ckpt.Checkpointed(model, optimizer, {"lr_schedule": lr_schedule, **({"ema": ema} if ema else {})})


def make_ema(model, decay: float | None):
    """An EMA of ``model``'s trainable parameters (diffusers ``EMAModel``: the decay used at update ``k`` is
    ``min(decay, (1 + k) / (10 + k))``), or None when ``decay`` is None. :class:`Loop` steps it once per optimizer
    step and :func:`checkpointed` saves it; the trainer copies it into the model it writes."""
    if decay is None:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel([p for p in model.parameters() if p.requires_grad], decay=decay)


def checkpoint_due(step: int, every: int, last: int) -> bool:
    """Whether optimizer step ``step`` (1-based) ends with a checkpoint: every ``every`` steps and at ``last``."""
    return step % every == 0 or step == last


@dataclass
class Loop:
    """Optimizer steps ``start + 1 .. max_steps`` of one session: gradient accumulation (the accelerator's
    ``gradient_accumulation_steps`` micro-steps per step), clipping at ``max_grad_norm`` (0: none), the LR
    schedule and EMA stepped once per step, a log row per step, a checkpoint every ``checkpoint_every`` steps and
    at ``max_steps`` (``checkpoint_state`` saved beside the step; the newest ``checkpoints_kept`` kept), and
    ``stop_after``: leave after that many steps of this session, as a killed job would. ``step`` is the last
    step taken."""

    accelerator: Any
    model: Any
    optimizer: Any
    lr_schedule: Any
    out: Path
    start: int
    max_steps: int
    checkpoint_every: int
    checkpoints_kept: int | None = None
    max_grad_norm: float = 0.0
    checkpoint_state: dict = field(default_factory=dict)
    ema: Any = None
    stop_after: int | None = None
    desc: str = "train"
    progress: bool = True

    def __post_init__(self):
        self.step = self.start

    def run(self, batches: Iterable, loss: Callable[[Any, Any, int], torch.Tensor], global_batch: int) -> bool:
        """Train on ``batches`` (the micro-batches from micro-step ``start * accumulation`` on) with
        ``loss(model, batch, micro)`` -> scalar of this process's share; ``global_batch``: samples per
        micro-step over all processes (for the log's rate). True when ``max_steps`` is reached, False when
        ``stop_after`` stopped it."""
        acc = self.accelerator
        log = TrainLog(self.out, self.start) if acc.is_main_process else None
        bar = tqdm(total=self.max_steps, initial=self.start, desc=self.desc,
                   disable=not (self.progress and acc.is_local_main_process))
        losses, tick = [], time.perf_counter()
        try:
            for micro, batch in enumerate(batches, start=self.start * acc.gradient_accumulation_steps):
                losses.append(self._micro_step(loss, batch, micro))
                if not acc.sync_gradients:
                    continue
                lr, value = self._optimizer_step(losses)
                now = time.perf_counter()
                if log:
                    log.append(self.step, value, lr, len(losses) * global_batch / (now - tick))
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
                losses, tick = [], now
                self._maybe_checkpoint()
                if self._stopped():
                    return False
            return True
        finally:
            bar.close()

    def _micro_step(self, loss: Callable, batch, micro: int) -> float:
        acc = self.accelerator
        with acc.accumulate(self.model):
            value = loss(self.model, batch, micro)
            acc.backward(value)
            if acc.sync_gradients and self.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return acc.reduce(value.detach(), "mean").item()

    def _optimizer_step(self, losses: list[float]) -> tuple[float, float]:
        """After the step's last micro-step: the LR it used, and its mean loss; steps the schedule and EMA."""
        lr = self.lr_schedule.get_last_lr()[0]
        self.lr_schedule.step()
        if self.ema:
            self.ema.step([p for p in self.model.parameters() if p.requires_grad])
        self.step += 1
        return lr, sum(losses) / len(losses)

    def _maybe_checkpoint(self) -> None:
        if not checkpoint_due(self.step, self.checkpoint_every, self.max_steps):
            return
        ckpt.save_checkpoint(self.accelerator, self.out, self.step, self.checkpoint_state,
                             checkpointed(self.model, self.optimizer, self.lr_schedule, self.ema))
        if self.accelerator.is_main_process:
            ckpt.prune_checkpoints(self.out, self.checkpoints_kept)
            plot_loss(self.out)

    def _stopped(self) -> bool:
        return (self.stop_after is not None and self.step - self.start >= self.stop_after
                and self.step < self.max_steps)
