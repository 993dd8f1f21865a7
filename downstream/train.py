"""Train and test one video classifier on labelled clips with a PySlowFast recipe (Table 2's cells).

A recipe is a YAML file under ``downstream/configs/recipes/`` (or any path) read into :class:`Recipe`, each one
PySlowFast's Kinetics config: ``slowfast_8x8_r50`` (32 fast frames at stride 2 of the video at 30 fps, slow 8,
crop 224 from a short side jittered in [256, 320], SGD lr 0.1 momentum 0.9 nesterov, wd 1e-4 and none on
BatchNorm, cosine with linear warmup, precise BatchNorm statistics over 200 batches, 10 test views x 3 crops of
256) and ``mvitv2_s_16x4`` (16 frames at stride 4 at 30 fps, timm RandAugment ``rand-m7-n4-mstd0.5-inc1``,
random-resized crop 224, random erasing 0.25, 2 augmented samples per clip, batch 16, AdamW lr 1e-4 wd 0.05
without decay on 1-D parameters, warmup then cosine, mixup 0.8 / cutmix 1.0, label smoothing 0.1, gradient
clipping 1.0, 5 test views); ``*_tiny`` recipes keep the optimisers at CPU size. Sampling and augmentation:
:class:`downstream.ophnet.ClipSampling` and :mod:`downstream.augment`; ``batch_size`` counts clips (videos),
so with ``num_sample`` S the model sees S x ``batch_size`` samples a step (PySlowFast's ``TRAIN.BATCH_SIZE``).

:func:`train_classifier` writes a run folder::

    run.json                    recipe, seed, data sizes, model init, unreadable clips (written first)
    log.csv                     step, epoch, loss, lr, clips/s, failed clips in the batch
    checkpoints/step_NNNNNNN/   ophora.training.checkpoint: model, optimizer, scheduler, RNG states (safetensors +
                                JSON, never a pickle) and trainer_state.json
    model.safetensors           final weights
    eval/<split>.npz            per-clip scores (views averaged), labels, row ids
    eval/confusion_<split>.png  row-normalised confusion matrix
    results.json                top-1, top-5, macro and per-class accuracy on every evaluated split

**Exact resume.** The batch of step s is a pure function of (seed, s) (a seeded permutation per epoch), every
clip's temporal position and augmentation of (seed, epoch, clip), and the per-step randomness (dropout, drop
path, mixup) of (seed, s); a checkpoint restores model, optimizer, scheduler and step. A run killed after any
checkpoint and started again ends with the weights of an uninterrupted run (bit for bit on one CPU process).
**Multi-GPU**: run the same code under ``accelerate launch``; each process takes every world-size-th clip of
the global batch (the recipe's ``batch_size`` is global) and evaluation gathers the clips' scores.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from downstream import metrics
from downstream.models import ClassifierSpec, build_classifier
from downstream.ophnet import ClipDataset, ClipSampling
from ophora.configs import ConfigError, apply_overrides, build_config, load_config
from ophora.data.atomic import atomic_path
from ophora.results import write_json
from ophora.seeding import derive_seed, rng
from ophora.training import loop
from ophora.training.checkpoint import prune_checkpoints, save_checkpoint
from ophora.training.distributed import make_accelerator
from ophora.training.logs import TrainLog

__all__ = ["Recipe", "RECIPES_DIR", "load_recipe", "train_classifier", "evaluate_classifier", "predict_scores", "lr_at",
           "TrainingStopped", "parameter_groups", "update_bn_stats"]

RECIPES_DIR = Path(__file__).parent / "configs" / "recipes"
RESULTS_NAME, MODEL_NAME = "results.json", "model.safetensors"
LOG_COLUMNS = ("step", "epoch", "loss", "lr", "clips_per_s", "failed_clips")
LOG_FORMATS = {"loss": ".6f", "lr": ".6e", "clips_per_s": ".2f"}


@dataclass(frozen=True)
class Recipe:
    """A classifier and how to train and test it. Frames, stride and crops as in :class:`ClipSampling`
    (``test_views`` temporal views x ``spatial_crops`` crops of ``test_crop`` px at test time);
    ``epochs``/``warmup_epochs`` over the training clips (``max_steps`` caps the steps); lr per global batch
    of ``batch_size`` clips; ``mixup_alpha``/``cutmix_alpha`` 0 turn them off; ``checkpoint_every`` in steps.
    ``target_fps``, ``jitter``, ``rrc_scale``/``rrc_ratio``, ``randaugment``/``randaugment_impl``,
    ``erase_prob``, ``num_sample``, ``test_offset``: see :class:`ClipSampling`. ``bn_weight_decay``: the weight
    decay of BatchNorm parameters (None: ``weight_decay``, the earlier behaviour); ``precise_bn_batches``: batches
    of precise BatchNorm statistics after training (0: off); ``cosine_after_warmup``: the cosine runs over the
    steps after the warmup (PySlowFast's ``SOLVER.COSINE_AFTER_WARMUP``) instead of over all steps."""

    name: str
    arch: str
    size: str = "full"
    weights: str = "auto"
    frames: int = 16
    stride: int = 4
    alpha: int = 4
    crop: int = 224
    short_side: int = 256
    test_views: int = 1
    spatial_crops: int = 1
    test_crop: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 1e-4
    zero_wd_1d: bool = False
    momentum: float = 0.9
    nesterov: bool = True
    epochs: int = 10
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    cosine_end_factor: float = 0.0
    max_steps: int | None = None
    batch_size: int = 8
    eval_batch_size: int = 8
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    randaugment: str | None = None
    randaugment_impl: str = "timm"
    grad_clip: float | None = None
    dropout: float = 0.5
    workers: int = 0
    checkpoint_every: int = 100
    target_fps: float | None = None
    jitter: tuple[int, int] | None = None
    rrc_scale: tuple[float, float] | None = None
    rrc_ratio: tuple[float, float] = (0.75, 4 / 3)
    erase_prob: float = 0.0
    num_sample: int = 1
    bn_weight_decay: float | None = None
    precise_bn_batches: int = 0
    cosine_after_warmup: bool = False
    test_offset: bool = True

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError("optimizer", f"must be 'sgd' or 'adamw', got {self.optimizer!r}")
        for name in ("batch_size", "epochs", "num_sample"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.precise_bn_batches < 0:
            raise ConfigError("precise_bn_batches", f"must be >= 0 (0: off), got {self.precise_bn_batches}")
        for name in ("jitter", "rrc_scale", "rrc_ratio"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        try:
            self.sampling()
        except ValueError as err:
            raise ConfigError("sampling", str(err)) from None

    def sampling(self) -> ClipSampling:
        return ClipSampling(self.frames, self.stride, self.crop, self.short_side, views=self.test_views,
                            randaugment=self.randaugment, spatial_crops=self.spatial_crops, test_crop=self.test_crop,
                            target_fps=self.target_fps, jitter=self.jitter, rrc_scale=self.rrc_scale,
                            rrc_ratio=self.rrc_ratio, randaugment_impl=self.randaugment_impl,
                            erase_prob=self.erase_prob, num_sample=self.num_sample, test_offset=self.test_offset)

    def classifier(self) -> ClassifierSpec:
        return ClassifierSpec(self.arch, self.size, self.frames, self.crop, self.alpha, self.weights, self.dropout)


def load_recipe(recipe: str | Path | Recipe, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """A recipe by name (``downstream/configs/recipes/<name>.yaml``), path or object, with dotted ``overrides``;
    problems raise :class:`~ophora.configs.ConfigError` naming the key and the file."""
    if isinstance(recipe, Recipe):
        source = f"recipe {recipe.name!r}"
        return build_config(Recipe, apply_overrides(dataclasses.asdict(recipe), overrides, source), source)
    return load_config(Recipe, recipe, overrides, shipped=RECIPES_DIR, what="recipe")


# ---------------------------------------------------------------------------------------------------------
# Schedule, batches, mixing


def steps_per_epoch(recipe: Recipe, clips: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped, as PySlowFast does)."""
    return max(1, clips // recipe.batch_size)


def total_steps(recipe: Recipe, clips: int) -> int:
    steps = recipe.epochs * steps_per_epoch(recipe, clips)
    return min(steps, recipe.max_steps) if recipe.max_steps else steps


def lr_at(recipe: Recipe, step: int, steps: int) -> float:
    """PySlowFast's cosine policy in steps: lr * (end + (1 - end) * (1 + cos(pi t / T)) / 2), with a linear
    warmup from ``warmup_start_factor * lr`` to the cosine value at the end of the warmup."""
    per_epoch = steps / recipe.epochs

    def cosine(t: float) -> float:
        end = recipe.cosine_end_factor
        return recipe.lr * (end + (1 - end) * (1 + math.cos(math.pi * t / steps)) / 2)

    warmup = recipe.warmup_epochs * per_epoch
    if recipe.cosine_after_warmup:  # PySlowFast SOLVER.COSINE_AFTER_WARMUP: the cosine runs over [warmup, T]
        plain = cosine

        def cosine(t: float) -> float:  # noqa: F811 - the shifted schedule replaces the plain one
            return plain((t - warmup) * steps / max(steps - warmup, 1e-9))
    if step < warmup:
        start = recipe.warmup_start_factor * recipe.lr
        return start + (cosine(warmup) - start) * step / warmup
    return cosine(step)


def batch_rows(seed: int, step: int, clips: int, batch: int) -> tuple[int, list[int]]:
    """(epoch, row positions) of the global batch of ``step``: a seeded permutation per epoch."""
    per_epoch = max(1, clips // batch)
    epoch, position = divmod(step, per_epoch)
    order = rng(seed, "order", epoch).permutation(clips)
    return epoch, order[position * batch:(position + 1) * batch].tolist()


def _soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    on = F.one_hot(labels, num_classes).float()
    return on * (1 - smoothing) + smoothing / num_classes


def _mix(video: torch.Tensor, targets: torch.Tensor, recipe: Recipe, g: np.random.Generator):
    """Mixup or CutMix (one, chosen with equal odds when both are on) with the batch flipped, PySlowFast style."""
    if video.shape[0] < 2 or (recipe.mixup_alpha <= 0 and recipe.cutmix_alpha <= 0) or g.random() >= recipe.mix_prob:
        return video, targets
    use_cutmix = recipe.cutmix_alpha > 0 and (recipe.mixup_alpha <= 0 or g.random() < 0.5)
    lam = float(g.beta(*(2 * [recipe.cutmix_alpha if use_cutmix else recipe.mixup_alpha])))
    flipped = video.flip(0)
    if use_cutmix:
        height, width = video.shape[-2:]
        cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
        cy, cx = int(g.integers(height)), int(g.integers(width))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        video = video.clone()
        video[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    else:
        video = lam * video + (1 - lam) * flipped
    return video, lam * targets + (1 - lam) * targets.flip(0)


def _collate(items: list[dict]) -> dict:
    return {"video": torch.stack([i["video"] for i in items]), "label": torch.tensor([i["label"] for i in items]),
            "index": [i["index"] for i in items], "error": [i["error"] for i in items]}


def _collate_train(items: list[dict]) -> dict:
    """Training batches: an item with S augmented samples ([S, 3, T, H, W], repeated augmentation) becomes S
    consecutive clips with its label, index and error (PySlowFast's ``multiple_samples_collate``)."""
    videos, labels, indices, errors = [], [], [], []
    for item in items:
        samples = item["video"] if item["video"].dim() == 5 else item["video"].unsqueeze(0)
        videos += list(samples)
        labels += [item["label"]] * len(samples)
        indices += [item["index"]] * len(samples)
        errors += [item["error"]] * len(samples)
    return {"video": torch.stack(videos), "label": torch.tensor(labels), "index": indices, "error": errors}


def _loader(dataset: ClipDataset, batches: list[list[tuple[int, int]]], workers: int):
    collate = _collate_train if dataset.train else _collate
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                       persistent_workers=False)


# ---------------------------------------------------------------------------------------------------------
# Model, optimiser


def parameter_groups(model: torch.nn.Module, recipe: Recipe) -> list[dict]:
    """PySlowFast's ``construct_optimizer`` groups: parameters of normalisation layers (BatchNorm, ...) at
    ``bn_weight_decay`` (SlowFast's ``BN.WEIGHT_DECAY 0.0``; None: the same decay as the rest, the earlier
    behaviour), 1-D parameters at 0 when ``zero_wd_1d`` (``SOLVER.ZERO_WD_1D_PARAM``), the rest at
    ``weight_decay``. Empty groups are left out; each group has a ``name``."""
    norm, decay, zero = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.modules.batchnorm._NormBase)
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if is_norm and recipe.bn_weight_decay is not None:
                norm.append(param)
            elif recipe.zero_wd_1d and param.ndim <= 1:
                zero.append(param)
            else:
                decay.append(param)
    groups = [{"name": "decay", "params": decay, "weight_decay": recipe.weight_decay},
              {"name": "norm", "params": norm, "weight_decay": recipe.bn_weight_decay},
              {"name": "zero_1d", "params": zero, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = [{k: v for k, v in g.items() if k != "name"} for g in parameter_groups(model, recipe)]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    return torch.optim.AdamW(groups, lr=recipe.lr)


class TrainingStopped(RuntimeError):
    """Raised by ``stop_after``: the run stopped after that many steps, as a killed job would."""


def _failures(batch: dict, df: pd.DataFrame) -> list[dict]:
    return [{"row": int(df.index[i]), "video_id": str(df["video_id"].iat[i]), "clip_path": str(df["clip_path"].iat[i]),
             "reason": e} for i, e in zip(batch["index"], batch["error"]) if e]


def train_classifier(recipe: Recipe, train_df: pd.DataFrame, eval_dfs: Mapping[str, pd.DataFrame], num_classes: int,
                     out: str | Path, *, seed: int = 0, unreadable: pd.DataFrame | None = None,
                     stop_after: int | None = None, progress: bool = False) -> dict:
    """Train on ``train_df`` (rows of :func:`downstream.ophnet.load_clips`, ``label`` < ``num_classes``), test on
    each of ``eval_dfs`` ({"val": ..., "test": ...}) and return the results (also ``out/results.json``).

    A finished run returns its results at once; an unfinished one resumes from its latest checkpoint.
    ``unreadable``: the clips :func:`~downstream.ophnet.scan_clips` found unreadable, recorded in run.json.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if (out / RESULTS_NAME).is_file():
        return json.loads((out / RESULTS_NAME).read_text())
    _check_labels(train_df, eval_dfs, num_classes)
    accelerator = make_accelerator()
    torch.manual_seed(derive_seed(seed, "init"))  # the same initial weights on every process and every run
    model, init = build_classifier(recipe.classifier(), num_classes)
    steps = total_steps(recipe, len(train_df))
    optimizer = _optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(recipe, s, steps) / recipe.lr)
    # the scheduler is not prepared (accelerate would step it once per process): one step per global batch
    model, optimizer = accelerator.prepare(model, optimizer)
    run_info = {"recipe": recipe, "num_classes": num_classes, "train_clips": len(train_df), "steps": steps,
                "eval_clips": {k: len(v) for k, v in eval_dfs.items()}, "init": init,
                "unreadable": [] if unreadable is None else unreadable.to_dict("records"),
                "processes": accelerator.num_processes}
    loop.write_run_record(accelerator, out, {"run": run_info}, recipe, seed)
    state = loop.restore(accelerator, out, loop.checkpointed(model, optimizer, scheduler))
    start, failed = int(state["step"]), list(state.get("failed", []))
    failed = _train_steps(accelerator, model, optimizer, scheduler, recipe, train_df, num_classes, out, seed,
                          start, steps, stop_after, progress, failed)
    precise = _precise_bn(accelerator, model, recipe, train_df, seed)
    model.eval()
    if accelerator.is_main_process:
        with atomic_path(out / MODEL_NAME) as tmp:
            save_file({k: v.contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()}, str(tmp))
    splits = {name: evaluate_classifier(accelerator, model, recipe, df, num_classes, out / "eval", name, seed)
              for name, df in eval_dfs.items()}
    results = {"recipe": recipe.name, "num_classes": num_classes, "steps": steps, "init": init["init"],
               "train_clips": len(train_df), "train_failed": failed, "precise_bn": precise, "splits": splits}
    if accelerator.is_main_process:
        write_json(out / RESULTS_NAME, results, config=recipe, seed=seed)
        prune_checkpoints(out, 1)
    accelerator.wait_for_everyone()
    return json.loads(json.dumps(results, default=str))


def _check_labels(train_df: pd.DataFrame, eval_dfs: Mapping[str, pd.DataFrame], num_classes: int) -> None:
    for name, df in {"train": train_df, **eval_dfs}.items():
        if len(df) and (df["label"].min() < 0 or df["label"].max() >= num_classes):
            raise ValueError(f"{name} clips have labels {int(df['label'].min())}..{int(df['label'].max())}, "
                             f"outside 0..{num_classes - 1}")
    if not len(train_df):
        raise ValueError("no training clips (all unreadable, or an empty train split)")


def _train_steps(accelerator, model, optimizer, scheduler, recipe, train_df, num_classes, out, seed, start, steps,
                 stop_after, progress, failed: list[dict]) -> list[dict]:
    """Steps [start, steps) with checkpoints; returns the clips that failed to decode (also logged)."""
    dataset = ClipDataset(train_df, recipe.sampling(), train=True, seed=seed)
    rank, world = accelerator.process_index, accelerator.num_processes
    plan = [batch_rows(seed, s, len(train_df), recipe.batch_size) for s in range(start, steps)]
    # a process whose share of a (tiny) batch is empty repeats the first clip, so every process steps
    batches = [[(i, epoch) for i in rows[rank::world]] or [(rows[0], epoch)] for epoch, rows in plan]
    log = TrainLog(out, start, LOG_COLUMNS, LOG_FORMATS) if accelerator.is_main_process else None
    model.train()
    tick = time.perf_counter()
    for step, batch in zip(range(start, steps), _loader(dataset, batches, recipe.workers)):
        loss = _train_step(accelerator, model, optimizer, scheduler, recipe, batch, num_classes, seed, step)
        bad = _failures(batch, train_df)
        failed += bad
        done = step + 1
        if log:
            rate = len(batch["label"]) * world / max(time.perf_counter() - tick, 1e-9)
            log.append(done, plan[step - start][0], loss, scheduler.get_last_lr()[0], rate, len(bad))
            if progress:
                print(f"step {done}/{steps} loss {loss:.4f}", flush=True)
        tick = time.perf_counter()
        if loop.checkpoint_due(done, recipe.checkpoint_every, steps):
            save_checkpoint(accelerator, out, done, {"recipe": recipe.name, "seed": seed, "failed": failed},
                            loop.checkpointed(model, optimizer, scheduler))
        if stop_after is not None and done - start >= stop_after and done < steps:
            raise TrainingStopped(f"stopped after step {done} of {steps} (stop_after={stop_after})")
    return failed


def _train_step(accelerator, model, optimizer, scheduler, recipe, batch, num_classes, seed, step) -> float:
    torch.manual_seed(derive_seed(seed, "step", step, accelerator.process_index))
    video, labels = batch["video"].to(accelerator.device), batch["label"].to(accelerator.device)
    valid = torch.tensor([not e for e in batch["error"]], dtype=torch.float32, device=video.device)
    targets = _soft_targets(labels, num_classes, recipe.label_smoothing)
    video, targets = _mix(video, targets, recipe, rng(seed, "mix", step, accelerator.process_index))
    valid = valid * valid.flip(0) if recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0 else valid
    logits = model(video)
    per_clip = -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    loss = (per_clip * valid).sum() / valid.sum().clamp(min=1)
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    if recipe.grad_clip:
        accelerator.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    optimizer.step()
    scheduler.step()
    return float(accelerator.reduce(loss.detach(), "mean"))  # the mean over processes, for the log


# ---------------------------------------------------------------------------------------------------------
# Precise BatchNorm statistics


def _norm_layers(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
            and m.track_running_stats]


@torch.no_grad()
def update_bn_stats(model: torch.nn.Module, batches, accelerator=None) -> int:
    """Replace every BatchNorm layer's running mean and variance by their average over ``batches`` (an iterable
    of model inputs), as fvcore's ``update_bn_stats`` does for PySlowFast's ``BN.USE_PRECISE_STATS``: momentum
    1 so each forward pass stores its batch statistics, an equal-weight running average of them, the layers'
    momentum restored. With several processes the averages are averaged over processes. Returns the number of
    batches used (0: the model has no BatchNorm layer in training mode, nothing changed)."""
    layers = _norm_layers(model)
    if not layers:
        return 0
    momentum = [layer.momentum for layer in layers]
    means = [torch.zeros_like(layer.running_mean) for layer in layers]
    variances = [torch.zeros_like(layer.running_var) for layer in layers]
    for layer in layers:
        layer.momentum = 1.0
    count = 0
    for count, inputs in enumerate(batches, start=1):
        model(inputs)
        for layer, mean, var in zip(layers, means, variances):
            mean += (layer.running_mean - mean) / count
            var += (layer.running_var - var) / count
    for layer, mean, var, m in zip(layers, means, variances, momentum):
        if count:
            if accelerator is not None and accelerator.num_processes > 1:
                mean, var = accelerator.reduce(mean, "mean"), accelerator.reduce(var, "mean")
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
        layer.momentum = m
    return count


def _precise_bn(accelerator, model, recipe: Recipe, train_df: pd.DataFrame, seed: int) -> dict | None:
    """PySlowFast's precise BatchNorm statistics after training: ``min(precise_bn_batches, batches per epoch)``
    global batches of training clips (training augmentation, no mixup; a seeded draw) through the model in
    training mode (:func:`update_bn_stats`). None when off or the model has no BatchNorm layer."""
    if recipe.precise_bn_batches <= 0 or not _norm_layers(model):
        return None
    count = min(recipe.precise_bn_batches, steps_per_epoch(recipe, len(train_df)))
    order = rng(seed, "precise_bn").permutation(len(train_df))
    rank, world = accelerator.process_index, accelerator.num_processes
    batches = []
    for k in range(count):
        rows = order[k * recipe.batch_size:(k + 1) * recipe.batch_size].tolist()
        batches.append([(i, "precise_bn") for i in rows[rank::world]] or [(rows[0], "precise_bn")])
    dataset = ClipDataset(train_df, recipe.sampling(), train=True, seed=seed)
    model.train()
    inputs = (batch["video"].to(accelerator.device) for batch in _loader(dataset, batches, recipe.workers))
    used = update_bn_stats(model, inputs, accelerator)
    return {"batches": used, "layers": len(_norm_layers(model))}


# ---------------------------------------------------------------------------------------------------------
# Testing


@torch.no_grad()
def predict_scores(accelerator, model, recipe: Recipe, df: pd.DataFrame, seed: int = 0
                   ) -> tuple[np.ndarray, list[dict]]:
    """Softmax scores float [N, C] per clip (mean over the recipe's temporal views x spatial crops; NaN rows for
    clips that failed to decode) and the failures. Clips are sharded over processes and gathered; the model sees
    at most ``eval_batch_size`` views at once."""
    model.eval()
    dataset = ClipDataset(df, recipe.sampling(), train=False, seed=seed)
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(df), world))
    batches = [[(i, 0) for i in mine[k:k + recipe.eval_batch_size]]
               for k in range(0, len(mine), recipe.eval_batch_size)]
    found: list[tuple[int, list[float] | None, str]] = []
    for batch in _loader(dataset, batches, recipe.workers):
        video = batch["video"]  # [B, V, 3, T, H, W]
        b, v = video.shape[:2]
        views = video.flatten(0, 1)
        probs = torch.cat([model(chunk.to(accelerator.device)).float().softmax(dim=1).cpu()
                           for chunk in views.split(recipe.eval_batch_size)])
        probs = probs.view(b, v, -1).mean(dim=1).numpy()
        for i, p, e in zip(batch["index"], probs, batch["error"]):
            found.append((i, None if e else p.tolist(), e))
    if world > 1:
        from accelerate.utils import gather_object

        found = gather_object(found)
    failures = []
    rows: dict[int, list[float]] = {}
    for i, p, e in found:
        if e:
            failures.append({"row": int(df.index[i]), "video_id": str(df["video_id"].iat[i]),
                             "clip_path": str(df["clip_path"].iat[i]), "reason": e})
        else:
            rows[i] = p
    width = len(next(iter(rows.values()))) if rows else 0
    scores = np.full((len(df), width), np.nan)
    for i, p in rows.items():
        scores[i] = p
    return scores, failures


def evaluate_classifier(accelerator, model, recipe: Recipe, df: pd.DataFrame, num_classes: int, out: Path,
                        split: str, seed: int = 0) -> dict:
    """Metrics of one split (clips that failed to decode are listed and left out of the metrics)."""
    scores, failures = predict_scores(accelerator, model, recipe, df, seed)
    ok = ~np.isnan(scores).any(axis=1) if scores.size else np.zeros(len(df), bool)
    labels = df["label"].to_numpy(np.int64)
    summary = metrics.summarise(scores[ok], labels[ok], num_classes) if ok.any() else {"clips": 0}
    summary.update({"failed": len(failures), "failures": failures, "views": recipe.test_views,
                    "spatial_crops": recipe.spatial_crops})
    if accelerator.is_main_process and ok.any():
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / f"{split}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, scores=scores, labels=labels, rows=df.index.to_numpy(), ok=ok)
        matrix = metrics.confusion_matrix(scores[ok], labels[ok], num_classes)
        metrics.plot_confusion(matrix, out / f"confusion_{split}.png", f"{recipe.name}, {split}: top-1 "
                                                                        f"{summary['top1']:.3f}")
        summary["confusion_png"] = str(out / f"confusion_{split}.png")
    return summary


