"""Train the surgical-domain detectors (frame classifier, video classifier, text-video dual encoder).

    python -m benchmarks.detectors.train_surgical --out DIR [--detector frame|video|text|all] [--seed S]
        [--work DIR]                                                    # demo scale: OphSim worlds
    python -m benchmarks.detectors.train_surgical --out DIR --ophnet CSV --videos-root DIR \\
        --instructions CSV [--split train|all] [--epochs-scale X]       # paper scale: OphNet + Ophora-160K

Writes ``DIR/ophsim-surgical-<kind>-<version>.safetensors`` (:data:`WEIGHTS_VERSION`: frame v1, video v2, dual v1;
weights and declared architecture, see
:mod:`benchmarks.detectors.surgical`) and ``DIR/recipe.json`` (world seeds and sizes or data files, epochs,
batch sizes, learning rates, seeds, per-epoch losses and accuracies, wall time; :func:`ophora.results.write_json`).

**Reserved world seeds.** At demo scale the detectors are trained on the OphSim worlds of seeds 7001, 7002, 7003
and 7004 (:data:`WORLD_SEEDS`). The video detector: 3 patients each, 24 frames per phase clip, 128x128. The frame
detector and the dual encoder: the same seeds rendered with 4 patients each at 64x64, 16 frames per phase clip in
7001 and 7003 and 24 in 7002 and 7004 (the size and clip lengths of the demo's evaluation worlds). No evaluation
world and no test may use these seeds: a detector must never have seen the videos it judges. (The sanity suite's
evaluation world uses seed 9001; the tests use their own seeds; the arrow-of-time branch below was measured on
a validation world of seed 8101.) The video detector's arrow-of-time branch trains on the same seeds rendered
with 12 patients each at the frame detector's settings (more patients: more variety between the frames of a
pair).

**Deterministic.** One torch thread, ``torch.use_deterministic_algorithms(True)``, every random draw (weights,
batch order, clip offsets, temporal corruptions) from generators seeded by (``--seed``, detector, epoch): the
same command on the same machine and package lock writes byte-identical files. The shipped weights in
``benchmarks/detectors/surgical_weights/`` were written by ``--out benchmarks/detectors/surgical_weights``
with the defaults.

**Recipe.** ``frame``: phase, operation and (OphSim) instrument, iris colour and eye side heads, plus two
self-supervised capture-quality heads: half the frames of each batch go through a random capture degradation
(Gaussian noise, JPEG, Gaussian blur, down- and up-scaling, a colour cast along a random RGB direction; each
parameter drawn uniformly from a range, :data:`~benchmarks.detectors.surgical_data.CAPTURE_RANGES`) and the heads
name its kind and the quarter of its range. These are the same kinds of degradation the sanity suite applies (at
other, continuous parameters): the capture heads teach the features what the sanity suite's spatial rows then
check, so those rows show that the features carry capture quality, not that a semantic classifier discovered it on
its own. Cross-entropy summed over heads (capture heads weighted ``capture_weight``), AdamW. ``video``: phase and
operation heads on 16-frame windows (labels of the middle frame) plus a temporal-order head: each window is shown
natural, reversed, shuffled or frozen (one frame repeated), so the features see frame order. Two arrow-of-time
options exist and are off in the shipped recipe (``video_pairs``: each window shown twice, natural and corrupted,
so the pair differs only in frame order; ``time_difference``: features from [mean over time, later half minus
earlier half]): trained together on the 64x64 worlds they did not make the order head generalise to an unseen
world and cost the features their response to noise, JPEG, shuffling and freezing (see docs/sanity.md).
The shipped video detector (v2) adds an arrow-of-time branch to that body (trained exactly as v1; ``order_width``,
0 for v1): an :class:`~benchmarks.detectors.surgical.OrderNet` shown pairs of frames of one training run and taught
which of the two comes later (the runs' own frame order: no label beyond the video itself, so the same recipe holds
for OphNet at paper scale), both frames mirrored alike and half the pairs put through one capture degradation
together. The features gain ``order * arrow``, where ``order`` in [-1, 1] sums the branch's judgements over 35
frame pairs of the clip (:func:`~benchmarks.detectors.surgical.clip_order`) and ``arrow`` is a constant direction
whose length puts the training clips' mean order ``arrow_weight`` feature SDs from zero (:func:`arrow_vector`).
The heads read the body alone. Chosen on a validation world (seed 8101; see docs/sanity.md): the branch reads the
order of unseen patients' clips (order 0.60 +- 0.30 for natural clips, 94% of them above zero), and at
``arrow_weight`` 8 the surgical FVD sees reversal while the real-vs-real interval widens by about 1. Two earlier
arrow-of-time attempts failed there: a progress-within-phase regressor (commit a62a567: its estimates did not carry
over to unseen patients, 0.19 +- 0.22) and the two body options above.
``text`` (the dual encoder): at demo scale its video tower starts from a video classifier of its own
(not shipped), trained with both arrow-of-time options on the frame detector's 64x64 worlds, and it trains on
those worlds' instruction-clip pairs (at paper scale the tower starts from the video detector); the tower is
fine-tuned at a tenth of the learning rate, the bag-of-words text tower learns from scratch; symmetric InfoNCE,
batches of whole surgeries (each clip's negatives include the other phases of its own patient: the hard
negatives of a prompt that names another phase), 15% of each instruction's words dropped. (The same dual encoder
trained on the 128x128 worlds from the shipped video detector reached recall@1 0.21 on the sanity world's
matched prompts, against 0.38 for this one.)

Paper scale reads the same way (:mod:`benchmarks.detectors.surgical_data`): ``--ophnet`` an OphNet CSV with
``phase_id`` (and ``operation_id``), ``--videos-root`` its untrimmed videos as ``<video_id>.mp4``,
``--instructions`` an Ophora-160K CSV with ``clips/`` beside it. Data are held in memory (``--max-frames``
frames per run or clip, 24 KB each), which bounds the data set's size a machine can train on.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.detectors.surgical import (
    CLIP_LENGTH,
    ORDER_CLASSES,
    DualEncoder,
    FrameNet,
    OrderNet,
    Tokenizer,
    VideoNet,
    read_detector,
    save_detector,
)
from benchmarks.detectors.surgical_data import (
    ANATOMY,
    CAPTURE_CLASSES,
    INSTRUMENTS,
    SEVERITY_BINS,
    Pair,
    Run,
    capture_degrade,
    capture_degrade_together,
    load_pairs,
    load_runs,
)
from ophora.results import write_json
from ophora.seeding import derive_seed, rng
from ophora.weights import SURGICAL_VERSION, file_sha256

__all__ = ["WORLD_SEEDS", "Recipe", "DEMO", "weights_file", "demo_worlds", "train_frame", "train_video",
           "train_order", "arrow_vector", "with_arrow", "train_text", "train", "main"]

WORLD_SEEDS = (7001, 7002, 7003, 7004)  # reserved: no evaluation world or test may use them
WEIGHTS_VERSION = SURGICAL_VERSION  # file version per kind (ophora.weights registers the shipped files by it)


@dataclass(frozen=True)
class Recipe:
    """Sizes and optimisation of the three detectors (the defaults made the shipped weights)."""

    world_seeds: tuple[int, ...] = WORLD_SEEDS
    # the video and dual detectors' worlds (patients per world, frames per phase clip for each seed, size)
    world_videos: int = 3
    world_frames: tuple[int, ...] = (24, 24, 24, 24)
    world_size: tuple[int, int] = (128, 128)
    # the frame detector's worlds: the same seeds rendered at the demo's evaluation size and clip lengths
    frame_world_videos: int = 4
    frame_world_frames: tuple[int, ...] = (16, 24, 16, 24)
    frame_world_size: tuple[int, int] = (64, 64)
    max_frames: int = 32
    width: int = 32
    frame_epochs: int = 8
    frame_batch: int = 64
    frame_lr: float = 3e-3
    capture_fraction: float = 0.5  # frames shown through a capture degradation (the capture-quality heads)
    capture_weight: float = 2.0  # loss weight of the capture and severity heads (the others 1)
    video_epochs: int = 14
    video_batch: int = 16
    video_windows_per_run: int = 4
    video_lr: float = 3e-3
    video_pairs: bool = False  # each window shown natural and corrupted (the arrow-of-time pairs; see _video_batch)
    time_difference: bool = False  # VideoNet features from [mean, later half - earlier half]
    # the video detector's arrow-of-time branch (OrderNet: which of two frames of a run comes later)
    order_width: int = 16  # 0: no branch (v1)
    order_world_videos: int = 12  # the branch's worlds: these patients per seed, at the frame worlds' settings
    order_epochs: int = 35
    order_pairs_per_run: int = 16  # frame pairs drawn from each run per epoch
    order_batch: int = 64
    order_lr: float = 3e-3
    order_capture_fraction: float = 0.5  # pairs shown through one capture degradation (both frames alike)
    arrow_weight: float = 8.0  # the training clips' mean order score sits this many feature SDs along ``arrow``
    tower_windows_per_run: int = 2  # the dual's tower (demo): windows per run, each shown natural and corrupted
    text_epochs: int = 30
    text_batch: int = 36  # 3 whole OphSim surgeries
    text_by_surgery: bool = True  # batches of whole surgeries (hard negatives from the other phases)
    text_lr: float = 2e-3
    text_tower_lr: float = 0.1  # the video tower's learning rate, relative to text_lr
    word_dropout: float = 0.15
    embed_dim: int = 64
    weight_decay: float = 1e-4


DEMO = Recipe()


def weights_file(kind: str) -> str:
    """File name of detector ``kind`` (frame, video, dual) in an output folder."""
    return f"ophsim-surgical-{kind}-{WEIGHTS_VERSION[kind]}.safetensors"


def _deterministic() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------------------------------------
# data


def demo_worlds(work: Path, recipe: Recipe, progress: bool = False, frame: bool = False,
                branch: bool = False) -> list[Path]:
    """Render (or reuse) the OphSim worlds of ``recipe.world_seeds`` under ``work`` (``frame``: at the frame
    detector's settings; ``branch``: the same settings with ``recipe.order_world_videos`` patients, the video
    detector's arrow-of-time branch); their folders."""
    from ophora.sim.world import WorldConfig, build_world

    videos, counts, size = ((recipe.frame_world_videos, recipe.frame_world_frames, recipe.frame_world_size) if frame
                            else (recipe.order_world_videos, recipe.frame_world_frames, recipe.frame_world_size)
                            if branch else (recipe.world_videos, recipe.world_frames, recipe.world_size))
    if len(counts) != len(recipe.world_seeds):
        raise ValueError(f"the recipe needs one frame count per world seed {recipe.world_seeds}, got {counts}")
    folders = []
    for seed, frames in zip(recipe.world_seeds, counts):
        size = tuple(size)
        folder = work / f"world-{seed}-{videos}x{frames}x{size[0]}x{size[1]}"
        config = WorldConfig(videos=videos, seed=seed, frames=frames, size=size)
        if not (folder / "world.json").is_file():
            build_world(config, folder, progress=progress)
        folders.append(folder)
    return folders


def _heads(runs: list[Run], names: tuple[str, ...]) -> dict[str, int]:
    """Classes per head: the largest label seen + 1 (OphSim's fixed vocabularies for instrument and anatomy);
    heads without any label are left out."""
    sizes = {"instrument": len(INSTRUMENTS), **{k: len(v) for k, v in ANATOMY.items()}}
    out = {}
    for name in names:
        seen = max((int(r.labels[name].max()) for r in runs if name in r.labels), default=-1)
        if seen >= 0:
            out[name] = max(sizes.get(name, 0), seen + 1)
    return out


# ---------------------------------------------------------------------------------------------------------
# training loops


def _optimizer(model: torch.nn.Module, lr: float, recipe: Recipe, steps: int, slow: list | tuple = ()):
    """AdamW with a one-cycle schedule; ``slow`` parameters learn at ``recipe.text_tower_lr`` times ``lr``."""
    ids = {id(p) for p in slow}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if slow:
        groups.append({"params": slow, "lr": lr * recipe.text_tower_lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=recipe.weight_decay)
    max_lr = [lr] + ([lr * recipe.text_tower_lr] if slow else [])
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(steps, 1), pct_start=0.2)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.2)


def _starts(count: int, batch: int) -> range:
    """Start of every full batch of an epoch (the remainder is dropped); one batch of all when fewer items."""
    return range(0, max(count - batch, 0) + 1, batch)


def _losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
            weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict]:
    """Sum of the heads' cross-entropies (label -1 ignored; ``weights`` per head, default 1) and each head's
    accuracy on labelled items."""
    total, accuracy = 0.0, {}
    for name, out in logits.items():
        y = targets[name]
        if (y >= 0).any():
            total = total + (weights or {}).get(name, 1.0) * F.cross_entropy(out, y, ignore_index=-1)
            accuracy[name] = float((out.argmax(1) == y)[y >= 0].float().mean())
    return total, accuracy


def _fit(model, batches: Callable[[int], list], step: Callable, epochs: int, lr: float, recipe: Recipe,
         log: list, name: str, slow: list | tuple = ()) -> None:
    """Run ``epochs`` epochs; ``batches(epoch)`` lists the epoch's batches, ``step(batch)`` -> (loss, accuracy)."""
    opt, schedule = _optimizer(model, lr, recipe, epochs * len(batches(0)), slow)
    for epoch in range(epochs):
        model.train()
        losses, accs = [], {}
        for batch in batches(epoch):
            loss, acc = step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(float(loss.detach()))
            for k, v in acc.items():
                accs.setdefault(k, []).append(v)
        record = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5),
                  **{f"acc_{k}": round(float(np.mean(v)), 4) for k, v in accs.items()}}
        log.append(record)
        print(f"{name} {json.dumps(record)}", file=sys.stderr)
    model.eval()


def train_frame(runs: list[Run], recipe: Recipe, seed: int, log: list) -> tuple[FrameNet, dict[str, Any]]:
    """The frame classifier on every frame of ``runs``; (model, its constructor config)."""
    heads = _heads(runs, ("phase", "operation", "instrument", "iris", "side"))
    if recipe.capture_fraction > 0:
        heads.update(capture=len(CAPTURE_CLASSES), severity=1 + SEVERITY_BINS)
    config = {"heads": heads, "width": recipe.width}
    torch.manual_seed(derive_seed(seed, "frame", "init"))
    model = FrameNet(**config)
    frames = torch.cat([r.frames for r in runs])
    labels = {h: torch.from_numpy(np.concatenate([r.labels.get(h, np.full(len(r.frames), -1)) for r in runs]))
              for h in config["heads"] if h not in ("capture", "severity")}

    def batches(epoch: int) -> list:
        order = rng(seed, "frame", "epoch", epoch).permutation(len(frames))
        return [(order[i:i + recipe.frame_batch], epoch, i) for i in _starts(len(order), recipe.frame_batch)]

    def step(batch):
        index, epoch, i = batch
        idx = torch.from_numpy(index)
        x, targets = frames[idx].float(), {h: y[idx] for h, y in labels.items()}
        if recipe.capture_fraction > 0:
            g = rng(seed, "frame", "capture", epoch, i)
            x, kind, severity = capture_degrade(x, g, recipe.capture_fraction)
            targets.update(capture=torch.from_numpy(kind), severity=torch.from_numpy(severity))
        return _losses(model(x), targets, {"capture": recipe.capture_weight, "severity": recipe.capture_weight})

    _fit(model, batches, step, recipe.frame_epochs, recipe.frame_lr, recipe, log, "frame")
    return model, config


def _window(frames: torch.Tensor, g: np.random.Generator) -> tuple[torch.Tensor, int]:
    """16 consecutive frames at a random offset (last frame repeated when short); (clip, middle frame index)."""
    n = len(frames)
    start = int(g.integers(0, max(n - CLIP_LENGTH, 0) + 1))
    idx = np.minimum(start + np.arange(CLIP_LENGTH), n - 1)
    return frames[torch.from_numpy(idx)], int(idx[CLIP_LENGTH // 2])


def _corrupt(clip: torch.Tensor, order: int, g: np.random.Generator) -> torch.Tensor:
    """The clip natural (0), reversed (1), shuffled (2, a permutation that is neither) or frozen (3, one frame)."""
    if order == 1:
        return clip.flip(0)
    if order == 2:
        perm = g.permutation(len(clip))
        while (perm == np.arange(len(clip))).all() or (perm == np.arange(len(clip))[::-1]).all():
            perm = g.permutation(len(clip))
        return clip[torch.from_numpy(perm)]
    if order == 3:
        return clip[int(g.integers(0, len(clip)))].expand_as(clip)
    return clip


def _video_batch(runs: list[Run], picks: np.ndarray, heads: dict[str, int], g: np.random.Generator,
                 pairs: bool = False):
    """Each picked window natural, reversed, shuffled or frozen (probabilities 0.4, 0.2, 0.2, 0.2); with ``pairs``,
    twice, natural and corrupted (reversed with probability 1/2, else shuffled or frozen): the pair differs only
    in frame order, so the order head must learn the arrow of time, not the content."""
    clips, targets = [], {h: [] for h in heads}
    for i in picks:
        clip, middle = _window(runs[i].frames, g)
        orders = (0, int(g.choice((1, 2, 3), p=(0.5, 0.25, 0.25)))) if pairs else \
            (int(g.choice(4, p=(0.4, 0.2, 0.2, 0.2))),)
        for order in orders:
            clips.append(_corrupt(clip, order, g))
            for h in heads:
                targets[h].append(order if h == "order" else
                                  int(runs[i].labels[h][middle]) if h in runs[i].labels else -1)
    return torch.stack(clips).float(), {h: torch.tensor(v, dtype=torch.int64) for h, v in targets.items()}


def train_video(runs: list[Run], recipe: Recipe, seed: int, log: list) -> tuple[VideoNet, dict[str, Any]]:
    """The video classifier on 16-frame windows of ``runs``; (model, its constructor config)."""
    heads = {**_heads(runs, ("phase", "operation")), "order": len(ORDER_CLASSES)}
    config = {"heads": heads, "width": recipe.width, **({"time_difference": True} if recipe.time_difference else {})}
    torch.manual_seed(derive_seed(seed, "video", "init"))
    model = VideoNet(**config)

    def batches(epoch: int) -> list:
        g = rng(seed, "video", "epoch", epoch)
        order = np.concatenate([g.permutation(len(runs)) for _ in range(recipe.video_windows_per_run)])
        return [(order[i:i + recipe.video_batch], epoch, i) for i in _starts(len(order), recipe.video_batch)]

    def step(batch):
        picks, epoch, i = batch
        x, y = _video_batch(runs, picks, heads, rng(seed, "video", "batch", epoch, i), recipe.video_pairs)
        return _losses(model(x), y)

    _fit(model, batches, step, recipe.video_epochs, recipe.video_lr, recipe, log, "video")
    return model, config


def train_order(runs: list[Run], recipe: Recipe, seed: int, log: list) -> OrderNet:
    """The arrow-of-time branch: an :class:`OrderNet` shown pairs of frames of one run (two distinct frames drawn
    at random, ``order_pairs_per_run`` pairs per run and epoch) and trained to tell whether the second comes
    later (binary cross-entropy on its logit). Both frames of a pair are mirrored alike (left-right, up-down, each
    with probability 1/2), and an ``order_capture_fraction`` of the pairs go through one capture degradation
    together (:func:`~benchmarks.detectors.surgical_data.capture_degrade_together`), so capture quality says
    nothing about order. Runs shorter than 2 frames are left out."""
    runs = [r for r in runs if len(r.frames) >= 2]
    if not runs:
        raise ValueError("no run has 2 or more frames; the arrow-of-time branch learns from frame order within runs")
    torch.manual_seed(derive_seed(seed, "order", "init"))
    model = OrderNet(recipe.order_width)
    lengths = np.array([len(r.frames) for r in runs])

    def batches(epoch: int) -> list:
        g = rng(seed, "order", "epoch", epoch)
        which = g.permutation(np.repeat(np.arange(len(runs)), recipe.order_pairs_per_run))
        first = (g.random(len(which)) * lengths[which]).astype(np.int64)
        second = (first + 1 + (g.random(len(which)) * (lengths[which] - 1)).astype(np.int64)) % lengths[which]
        return [(which[i:i + recipe.order_batch], first[i:i + recipe.order_batch], second[i:i + recipe.order_batch],
                 epoch, i) for i in _starts(len(which), recipe.order_batch)]

    def step(batch):
        which, first, second, epoch, i = batch
        pair = torch.stack([runs[r].frames[[a, b]] for r, a, b in zip(which, first, second)])  # [N, 2, 3, H, W]
        g = rng(seed, "order", "augment", epoch, i)
        flips = torch.from_numpy(g.random((len(pair), 2)) < 0.5)[:, :, None, None, None, None]
        pair = torch.where(flips[:, 0], pair.flip(4), pair)  # both frames of a pair left-right
        pair = torch.where(flips[:, 1], pair.flip(3), pair)  # and up-down
        pair = capture_degrade_together(pair, g, recipe.order_capture_fraction)
        later = torch.from_numpy((second > first).astype(np.float32))
        logit = model(pair[:, 0], pair[:, 1])
        loss = F.binary_cross_entropy_with_logits(logit, later)
        return loss, {"order": float(((logit > 0).float() == later).float().mean())}

    _fit(model, batches, step, recipe.order_epochs, recipe.order_lr, recipe, log, "order")
    return model


@torch.inference_mode()
def arrow_vector(video: VideoNet, runs: list[Run], recipe: Recipe) -> tuple[torch.Tensor, dict[str, float]]:
    """The video detector's ``arrow`` (its features gain ``order * arrow``, :func:`clip_order`): the unit vector
    with equal components, times ``recipe.arrow_weight`` * (RMS over dimensions of the body features' SD) / (mean
    order score), both over the middle 16-frame window of every training run played forwards. So the natural
    clips' arrow-of-time term is ``arrow_weight`` typical feature SDs long, and a reversed clip moves about twice
    that. Returns (arrow [dim], the statistics it came from)."""
    from benchmarks.detectors.surgical import middle_clip

    clips = torch.stack([r.frames[torch.from_numpy(middle_clip(len(r.frames)))] for r in runs]).float()
    body = torch.cat([video.body_features(clips[i:i + 16]) for i in range(0, len(clips), 16)])
    order = torch.cat([video.clip_order(clips[i:i + 16]) for i in range(0, len(clips), 16)])
    spread = float(body.var(0, unbiased=True).mean().sqrt())
    mean_order = float(order.mean())
    if mean_order <= 0.05:  # a branch that cannot tell the order (e.g. a run of a few steps) gets no arrow
        print(f"warning: the arrow-of-time branch cannot tell frame order on its training runs (mean order score "
              f"{mean_order:.3f} for clips played forwards): arrow set to zero", file=sys.stderr)
    length = recipe.arrow_weight * spread / mean_order if mean_order > 0.05 else 0.0
    arrow = torch.full((video.dim,), length / np.sqrt(video.dim), dtype=torch.float32)
    return arrow, {"feature_sd_rms": round(spread, 6), "mean_order": round(mean_order, 6),
                   "sd_order": round(float(order.std()), 6), "arrow_length": round(length, 6)}


def with_arrow(video: VideoNet, config: dict[str, Any], order: OrderNet, runs: list[Run],
               recipe: Recipe) -> tuple[VideoNet, dict[str, Any], dict[str, float]]:
    """``video`` with the arrow-of-time branch ``order`` and its ``arrow`` (:func:`arrow_vector`): (model,
    config, arrow statistics)."""
    config = {**config, "order_width": recipe.order_width}
    model = VideoNet(**config)
    model.load_state_dict({**video.state_dict(), **{f"order.{k}": v for k, v in order.state_dict().items()},
                           "arrow": torch.zeros(model.dim)})
    model.eval()
    arrow, stats = arrow_vector(model, runs, recipe)
    model.arrow.copy_(arrow)
    return model, config, stats


def _surgery(pair: Pair) -> str:
    """The surgery (video) a pair's clip comes from: its key without the trailing ``_<n>`` (OphSim, Ophora-160K)."""
    return pair.key.rsplit("_", 1)[0]


def _drop_words(text: str, p: float, g: np.random.Generator) -> str:
    """``text`` with each word dropped with probability ``p`` (at least one word kept)."""
    words = Tokenizer.words(text)
    keep = [w for w in words if g.random() >= p]
    return " ".join(keep or words[:1])


def train_text(pairs: list[Pair], video: VideoNet, recipe: Recipe, seed: int,
               log: list) -> tuple[DualEncoder, dict[str, Any]]:
    """The dual encoder on instruction-clip pairs, its video tower initialised from ``video`` (body and fuse) and
    fine-tuned at ``recipe.text_tower_lr`` times the learning rate; batches are whole surgeries, so each clip's
    negatives include the other phases of its own patient (the hard negatives of a prompt naming another phase);
    instructions lose ``recipe.word_dropout`` of their words."""
    config = {"vocab": Tokenizer.build([p.text for p in pairs]).vocab, "width": recipe.width,
              "dim": recipe.embed_dim, **({"time_difference": True} if video.time_difference else {})}
    torch.manual_seed(derive_seed(seed, "text", "init"))
    model = DualEncoder(**config)
    model.video.body.load_state_dict(video.body.state_dict())
    if model.video.fuse is not None:
        model.video.fuse.load_state_dict(video.fuse.state_dict())
    surgeries: dict[str, list[int]] = {}
    for j, pair in enumerate(pairs):
        surgeries.setdefault(_surgery(pair), []).append(j)
    groups = list(surgeries.values())

    def batches(epoch: int) -> list:
        g = rng(seed, "text", "epoch", epoch)
        order = np.array([j for k in g.permutation(len(groups)) for j in g.permutation(groups[k])], np.int64) \
            if recipe.text_by_surgery else g.permutation(len(pairs))
        return [(order[i:i + recipe.text_batch], epoch, i) for i in _starts(len(order), recipe.text_batch)]

    def step(batch):
        picks, epoch, i = batch
        g = rng(seed, "text", "batch", epoch, i)
        x = torch.stack([_window(pairs[j].frames, g)[0] for j in picks]).float()
        texts = [pairs[j].text for j in picks]
        v = model.encode_video(x)
        t = model.encode_text([_drop_words(text, recipe.word_dropout, g) for text in texts]
                              if recipe.word_dropout > 0 else texts)
        logits = model.logit_scale.exp().clamp(max=100) * v @ t.T
        # pairs with the same text are not negatives of each other
        same = torch.tensor([[a == b for b in texts] for a in texts])
        logits = logits.masked_fill(same & ~torch.eye(len(picks), dtype=torch.bool), -1e4)
        target = torch.arange(len(picks))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return loss, {"retrieval_t2v": float((logits.T.argmax(1) == target).float().mean())}

    slow = [*model.video.body.parameters(), *(model.video.fuse.parameters() if model.video.fuse is not None else [])] \
        if recipe.text_tower_lr != 1.0 else []
    _fit(model, batches, step, recipe.text_epochs, recipe.text_lr, recipe, log, "text", slow)
    return model, config


# ---------------------------------------------------------------------------------------------------------
# the command


@dataclass(frozen=True)
class Data:
    """Where the training data come from: OphNet-format CSVs with their videos, Ophora-160K-format CSVs."""

    ophnet: tuple[tuple[str, str], ...]  # (csv, videos root)
    instructions: tuple[str, ...]
    split: str | None = "train"
    frame_ophnet: tuple[tuple[str, str], ...] | None = None  # the frame detector's, when not ``ophnet``
    frame_instructions: tuple[str, ...] | None = None  # the dual encoder's pairs, when not ``instructions``
    order_ophnet: tuple[tuple[str, str], ...] | None = None  # the arrow-of-time branch's, when not ``ophnet``


def _ophnet_of(folders: list[Path]) -> tuple[tuple[str, str], ...]:
    return tuple((str(f / "ophnet" / "OphSim_loca_operation.csv"), str(f / "ophnet" / "videos")) for f in folders)


def demo_data(work: Path, recipe: Recipe, kinds: tuple[str, ...] = ("frame", "video", "text")) -> Data:
    """The demo's OphSim worlds (rendered under ``work`` when missing): the frame detector's and the others'."""
    folders = demo_worlds(work, recipe) if "video" in kinds else []
    small = demo_worlds(work, recipe, frame=True) if {"frame", "text"} & set(kinds) else []
    branch = demo_worlds(work, recipe, branch=True) if "video" in kinds and recipe.order_width else []
    return Data(_ophnet_of(folders), tuple(str(f / "ophora_instructions" / "instructions.csv") for f in folders),
                split=None, frame_ophnet=_ophnet_of(small),
                frame_instructions=tuple(str(f / "ophora_instructions" / "instructions.csv") for f in small),
                order_ophnet=_ophnet_of(branch) if branch else None)


def _tower_recipe(recipe: Recipe) -> Recipe:
    """The dual encoder's tower at demo scale: the video recipe with the arrow-of-time options on."""
    return replace(recipe, video_pairs=True, time_difference=True, video_windows_per_run=recipe.tower_windows_per_run)


def train(kinds: tuple[str, ...], out: Path, data: Data, recipe: Recipe = DEMO, seed: int = 0,
          scale: str = "demo") -> dict[str, Any]:
    """Train ``kinds`` (frame, video, text) into ``out``; return the recipe record also written to recipe.json."""
    _deterministic()
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"detectors": {}}
    recipe_path = out / "recipe.json"
    if recipe_path.is_file():  # detectors trained earlier into this folder keep their record
        record["detectors"] = json.loads(recipe_path.read_text()).get("detectors", {})
    demo_tower = data.frame_instructions is not None  # the dual's tower: its own classifier on the frame worlds
    if "text" in kinds and "video" not in kinds and not demo_tower and not (out / weights_file("video")).is_file():
        kinds = ("video", *kinds)  # the dual encoder's video tower starts from the video classifier
    start = time.perf_counter()

    def runs_of(sources) -> list[Run]:
        return [r for i, (csv, root) in enumerate(sources)
                for r in load_runs(csv, root, recipe.max_frames, data.split, prefix=f"{i}:")]

    runs = runs_of(data.ophnet) if "video" in kinds else []
    frame_runs = (runs_of(data.frame_ophnet) if data.frame_ophnet is not None else runs or runs_of(data.ophnet)) \
        if "frame" in kinds or ("text" in kinds and demo_tower) else []
    loaded = time.perf_counter() - start
    video = None
    for kind in (k for k in ("frame", "video", "text") if k in kinds):
        t0, log, examples = time.perf_counter(), [], len(frame_runs if kind == "frame" else runs)
        if kind == "frame":
            model, config = train_frame(frame_runs, recipe, seed, log)
        elif kind == "video":
            model, config = train_video(runs, recipe, seed, log)
            video = model
            if recipe.order_width:
                order_log: list = []
                branch_runs = runs_of(data.order_ophnet) if data.order_ophnet is not None else runs
                branch = train_order(branch_runs, recipe, seed, order_log)
                model, config, arrow_stats = with_arrow(model, config, branch, branch_runs, recipe)
                log = [*log, *({"order": r} for r in order_log), {"arrow": arrow_stats}]
        else:
            tower_record = None
            if demo_tower:  # a video classifier with the arrow-of-time options on the frame worlds, not shipped
                tower_log, t1 = [], time.perf_counter()
                tower, _ = train_video(frame_runs, _tower_recipe(recipe), seed, tower_log)
                tower_record = {"log": tower_log, "examples": len(frame_runs),
                                "train_seconds": round(time.perf_counter() - t1, 1)}
            else:
                tower = video if video is not None else read_detector(out / weights_file("video"), "video")[0]
            sources = data.frame_instructions if demo_tower else data.instructions
            pairs = [p for i, csv in enumerate(sources) for p in load_pairs(csv, recipe.max_frames, f"{i}:")]
            model, config = train_text(pairs, tower, recipe, seed, log)
            examples = len(pairs)
        file_kind = "dual" if kind == "text" else kind
        path = save_detector(model, file_kind, config, out / weights_file(file_kind))
        record["detectors"][file_kind] = {
            "file": path.name, "sha256": file_sha256(path, use_cache=False), "seed": seed, "scale": scale,
            "train_seconds": round(time.perf_counter() - t0, 1), "log": log, "examples": examples,
            "parameters": sum(p.numel() for p in model.parameters()),
            "config": {k: v for k, v in config.items() if k != "vocab"},
            **({"vocab_size": len(config["vocab"])} if "vocab" in config else {}),
            **({"tower": tower_record} if kind == "text" and tower_record is not None else {})}
    record.update(scale=scale, recipe=asdict(recipe), data=asdict(data) if scale != "demo" else {
        "worlds": {"seeds": list(recipe.world_seeds), "videos": recipe.world_videos, "frames": recipe.world_frames,
                   "size": list(recipe.world_size), "frame_videos": recipe.frame_world_videos,
                   "frame_frames": recipe.frame_world_frames, "frame_size": list(recipe.frame_world_size),
                   "order_videos": recipe.order_world_videos,
                   "note": "OphSim seeds reserved for the detectors (frame_*: the frame detector's renderings; "
                           "order_videos: patients per seed of the video detector's arrow-of-time branch, at the "
                           "frame_* settings)"}},
        load_seconds=round(loaded, 1), torch_threads=torch.get_num_threads())
    write_json(recipe_path, record, config={"kinds": list(kinds)}, seed=seed)
    return record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.detectors.train_surgical",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the .safetensors files and recipe.json")
    p.add_argument("--detector", default="all", choices=("frame", "video", "text", "all"))
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batch order and augmentation")
    p.add_argument("--work", default=None, help="demo: folder for the OphSim worlds (default: a temporary one)")
    p.add_argument("--ophnet", default=None, help="paper scale: OphNet CSV (phase_id[, operation_id])")
    p.add_argument("--videos-root", default=None, help="paper scale: folder of the untrimmed <video_id>.mp4")
    p.add_argument("--instructions", default=None, help="paper scale: Ophora-160K CSV (clip id,instruction)")
    p.add_argument("--split", default="train", choices=("train", "val", "test", "all"), help="OphNet rows used")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every epoch count (paper scale)")
    return p


def _scaled(recipe: Recipe, factor: float) -> Recipe:
    if factor == 1.0:
        return recipe
    return Recipe(**{**asdict(recipe), **{k: max(1, round(getattr(recipe, k) * factor))
                                          for k in ("frame_epochs", "video_epochs", "order_epochs",
                                                    "text_epochs")}})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kinds = ("frame", "video", "text") if args.detector == "all" else (args.detector,)
    recipe = _scaled(DEMO, args.epochs_scale)
    if args.ophnet or args.instructions:
        needs_ophnet = {"frame", "video"} & set(kinds) or not (Path(args.out) / weights_file("video")).is_file()
        if needs_ophnet and not (args.ophnet and args.videos_root):
            print("error: --ophnet CSV and --videos-root DIR are needed for the frame and video detectors",
                  file=sys.stderr)
            return 1
        if "text" in kinds and not args.instructions:
            print("error: --instructions CSV is needed for the text detector", file=sys.stderr)
            return 1
        data = Data(((args.ophnet, args.videos_root),) if args.ophnet else (),
                    (args.instructions,) if args.instructions else (), None if args.split == "all" else args.split)
        train(kinds, Path(args.out), data, recipe, args.seed, scale="data")
        return 0
    with tempfile.TemporaryDirectory(prefix="ophora-surgical-worlds-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        train(kinds, Path(args.out), demo_data(work, recipe, kinds), recipe, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
