"""Train the surgical-domain detectors (frame classifier, video classifier, text-video dual encoder).

    python -m benchmarks.detectors.train_surgical --out DIR [--detector frame|video|text|all] [--seed S]
        [--work DIR]                                                    # demo scale: OphSim worlds
    python -m benchmarks.detectors.train_surgical --out DIR --ophnet CSV --videos-root DIR \\
        --instructions CSV [--split train|all] [--epochs-scale X]       # paper scale: OphNet + Ophora-160K

Writes ``DIR/ophsim-surgical-<kind>-v1.safetensors`` (weights and declared architecture, see
:mod:`benchmarks.detectors.surgical`) and ``DIR/recipe.json`` (world seeds and sizes or data files, epochs,
batch sizes, learning rates, seeds, per-epoch losses and accuracies, wall time; :func:`ophora.results.write_json`).

**Reserved world seeds.** At demo scale the detectors are trained on the OphSim worlds of seeds 7001, 7002, 7003
and 7004 (:data:`WORLD_SEEDS`; 3 patients each, 24 frames per phase clip, 128x128). No evaluation world and no
test may use these seeds: a detector must never have seen the videos it judges. (The sanity suite's evaluation
world uses seed 9001; the tests use their own seeds.)

**Deterministic.** One torch thread, ``torch.use_deterministic_algorithms(True)``, every random draw (weights,
batch order, clip offsets, temporal corruptions) from generators seeded by (``--seed``, detector, epoch): the
same command on the same machine and package lock writes byte-identical files. The shipped weights in
``benchmarks/detectors/surgical_weights/`` were written by ``--out benchmarks/detectors/surgical_weights``
with the defaults.

**Recipe.** ``frame``: phase, operation and (OphSim) instrument, iris colour and eye side heads, cross-entropy
summed over heads, AdamW. ``video``: phase and operation heads on 16-frame windows (labels of the middle frame)
plus a temporal-order head: each window is shown natural, reversed, shuffled or frozen (one frame repeated),
so the features see frame order. ``text`` (the dual encoder): the video tower starts from the trained video
classifier (trained first when absent from ``--out``), the bag-of-words text tower from scratch; symmetric
InfoNCE on instruction-clip pairs.

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
from dataclasses import asdict, dataclass
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
    Tokenizer,
    VideoNet,
    read_detector,
    save_detector,
)
from benchmarks.detectors.surgical_data import ANATOMY, INSTRUMENTS, Pair, Run, load_pairs, load_runs
from ophora.results import write_json
from ophora.seeding import derive_seed, rng
from ophora.weights import file_sha256

__all__ = ["WORLD_SEEDS", "Recipe", "DEMO", "weights_file", "demo_worlds", "train_frame", "train_video", "train_text",
           "train", "main"]

WORLD_SEEDS = (7001, 7002, 7003, 7004)  # reserved: no evaluation world or test may use them
WEIGHTS_VERSION = "v1"


@dataclass(frozen=True)
class Recipe:
    """Sizes and optimisation of the three detectors (the defaults made the shipped weights)."""

    world_seeds: tuple[int, ...] = WORLD_SEEDS
    world_videos: int = 3
    world_frames: int = 24
    world_size: tuple[int, int] = (128, 128)
    max_frames: int = 32
    width: int = 32
    frame_epochs: int = 6
    frame_batch: int = 64
    frame_lr: float = 3e-3
    video_epochs: int = 14
    video_batch: int = 16
    video_windows_per_run: int = 4
    video_lr: float = 3e-3
    text_epochs: int = 30
    text_batch: int = 32
    text_lr: float = 2e-3
    embed_dim: int = 64
    weight_decay: float = 1e-4


DEMO = Recipe()


def weights_file(kind: str) -> str:
    """File name of detector ``kind`` (frame, video, dual) in an output folder."""
    return f"ophsim-surgical-{kind}-{WEIGHTS_VERSION}.safetensors"


def _deterministic() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------------------------------------
# data


def demo_worlds(work: Path, recipe: Recipe, progress: bool = False) -> list[Path]:
    """Render (or reuse) the OphSim worlds of ``recipe.world_seeds`` under ``work``; their folders."""
    from ophora.sim.world import WorldConfig, build_world

    folders = []
    for seed in recipe.world_seeds:
        folder = work / f"world-{seed}"
        config = WorldConfig(videos=recipe.world_videos, seed=seed, frames=recipe.world_frames,
                             size=tuple(recipe.world_size))
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


def _optimizer(model: torch.nn.Module, lr: float, recipe: Recipe, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.2)


def _starts(count: int, batch: int) -> range:
    """Start of every full batch of an epoch (the remainder is dropped); one batch of all when fewer items."""
    return range(0, max(count - batch, 0) + 1, batch)


def _losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Sum of the heads' cross-entropies (label -1 ignored) and each head's accuracy on labelled items."""
    total, accuracy = 0.0, {}
    for name, out in logits.items():
        y = targets[name]
        if (y >= 0).any():
            total = total + F.cross_entropy(out, y, ignore_index=-1)
            accuracy[name] = float((out.argmax(1) == y)[y >= 0].float().mean())
    return total, accuracy


def _fit(model, batches: Callable[[int], list], step: Callable, epochs: int, lr: float, recipe: Recipe,
         log: list, name: str) -> None:
    """Run ``epochs`` epochs; ``batches(epoch)`` lists the epoch's batches, ``step(batch)`` -> (loss, accuracy)."""
    opt, schedule = _optimizer(model, lr, recipe, epochs * len(batches(0)))
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
    config = {"heads": _heads(runs, ("phase", "operation", "instrument", "iris", "side")), "width": recipe.width}
    torch.manual_seed(derive_seed(seed, "frame", "init"))
    model = FrameNet(**config)
    frames = torch.cat([r.frames for r in runs])
    labels = {h: torch.from_numpy(np.concatenate([r.labels.get(h, np.full(len(r.frames), -1)) for r in runs]))
              for h in config["heads"]}

    def batches(epoch: int) -> list[np.ndarray]:
        order = rng(seed, "frame", "epoch", epoch).permutation(len(frames))
        return [order[i:i + recipe.frame_batch] for i in _starts(len(order), recipe.frame_batch)]

    def step(index: np.ndarray):
        idx = torch.from_numpy(index)
        return _losses(model(frames[idx].float()), {h: y[idx] for h, y in labels.items()})

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


def _video_batch(runs: list[Run], picks: np.ndarray, heads: dict[str, int], g: np.random.Generator):
    clips, targets = [], {h: [] for h in heads}
    for i in picks:
        clip, middle = _window(runs[i].frames, g)
        order = int(g.choice(4, p=(0.4, 0.2, 0.2, 0.2)))
        clips.append(_corrupt(clip, order, g))
        for h in heads:
            targets[h].append(order if h == "order" else int(runs[i].labels[h][middle]) if h in runs[i].labels else -1)
    return torch.stack(clips).float(), {h: torch.tensor(v, dtype=torch.int64) for h, v in targets.items()}


def train_video(runs: list[Run], recipe: Recipe, seed: int, log: list) -> tuple[VideoNet, dict[str, Any]]:
    """The video classifier on 16-frame windows of ``runs``; (model, its constructor config)."""
    heads = {**_heads(runs, ("phase", "operation")), "order": len(ORDER_CLASSES)}
    config = {"heads": heads, "width": recipe.width}
    torch.manual_seed(derive_seed(seed, "video", "init"))
    model = VideoNet(**config)

    def batches(epoch: int) -> list:
        g = rng(seed, "video", "epoch", epoch)
        order = np.concatenate([g.permutation(len(runs)) for _ in range(recipe.video_windows_per_run)])
        return [(order[i:i + recipe.video_batch], epoch, i) for i in _starts(len(order), recipe.video_batch)]

    def step(batch):
        picks, epoch, i = batch
        x, y = _video_batch(runs, picks, heads, rng(seed, "video", "batch", epoch, i))
        return _losses(model(x), y)

    _fit(model, batches, step, recipe.video_epochs, recipe.video_lr, recipe, log, "video")
    return model, config


def train_text(pairs: list[Pair], video: VideoNet, recipe: Recipe, seed: int,
               log: list) -> tuple[DualEncoder, dict[str, Any]]:
    """The dual encoder on instruction-clip pairs, its video tower initialised from ``video``'s body."""
    config = {"vocab": Tokenizer.build([p.text for p in pairs]).vocab, "width": recipe.width,
              "dim": recipe.embed_dim}
    torch.manual_seed(derive_seed(seed, "text", "init"))
    model = DualEncoder(**config)
    model.video.body.load_state_dict(video.body.state_dict())

    def batches(epoch: int) -> list:
        order = rng(seed, "text", "epoch", epoch).permutation(len(pairs))
        return [(order[i:i + recipe.text_batch], epoch, i) for i in _starts(len(order), recipe.text_batch)]

    def step(batch):
        picks, epoch, i = batch
        g = rng(seed, "text", "batch", epoch, i)
        x = torch.stack([_window(pairs[j].frames, g)[0] for j in picks]).float()
        v, t = model.encode_video(x), model.encode_text([pairs[j].text for j in picks])
        logits = model.logit_scale.exp().clamp(max=100) * v @ t.T
        # pairs with the same text are not negatives of each other
        texts = [pairs[j].text for j in picks]
        same = torch.tensor([[a == b for b in texts] for a in texts])
        logits = logits.masked_fill(same & ~torch.eye(len(picks), dtype=torch.bool), -1e4)
        target = torch.arange(len(picks))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return loss, {"retrieval_t2v": float((logits.T.argmax(1) == target).float().mean())}

    _fit(model, batches, step, recipe.text_epochs, recipe.text_lr, recipe, log, "text")
    return model, config


# ---------------------------------------------------------------------------------------------------------
# the command


@dataclass(frozen=True)
class Data:
    """Where the training data come from: OphNet-format CSVs with their videos, Ophora-160K-format CSVs."""

    ophnet: tuple[tuple[str, str], ...]  # (csv, videos root)
    instructions: tuple[str, ...]
    split: str | None = "train"


def demo_data(work: Path, recipe: Recipe) -> Data:
    folders = demo_worlds(work, recipe)
    return Data(tuple((str(f / "ophnet" / "OphSim_loca_operation.csv"), str(f / "ophnet" / "videos")) for f in folders),
                tuple(str(f / "ophora_instructions" / "instructions.csv") for f in folders), split=None)


def train(kinds: tuple[str, ...], out: Path, data: Data, recipe: Recipe = DEMO, seed: int = 0,
          scale: str = "demo") -> dict[str, Any]:
    """Train ``kinds`` (frame, video, text) into ``out``; return the recipe record also written to recipe.json."""
    _deterministic()
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"detectors": {}}
    recipe_path = out / "recipe.json"
    if recipe_path.is_file():  # detectors trained earlier into this folder keep their record
        record["detectors"] = json.loads(recipe_path.read_text()).get("detectors", {})
    if "text" in kinds and "video" not in kinds and not (out / weights_file("video")).is_file():
        kinds = ("video", *kinds)  # the dual encoder's video tower starts from the video classifier
    start = time.perf_counter()
    runs = [r for i, (csv, root) in enumerate(data.ophnet)
            for r in load_runs(csv, root, recipe.max_frames, data.split, prefix=f"{i}:")] \
        if {"frame", "video"} & set(kinds) else []
    loaded = time.perf_counter() - start
    video = None
    for kind in (k for k in ("frame", "video", "text") if k in kinds):
        t0, log, examples = time.perf_counter(), [], len(runs)
        if kind == "frame":
            model, config = train_frame(runs, recipe, seed, log)
        elif kind == "video":
            model, config = train_video(runs, recipe, seed, log)
            video = model
        else:
            video = video if video is not None else read_detector(out / weights_file("video"), "video")[0]
            pairs = [p for i, csv in enumerate(data.instructions) for p in load_pairs(csv, recipe.max_frames, f"{i}:")]
            model, config = train_text(pairs, video, recipe, seed, log)
            examples = len(pairs)
        file_kind = "dual" if kind == "text" else kind
        path = save_detector(model, file_kind, config, out / weights_file(file_kind))
        record["detectors"][file_kind] = {
            "file": path.name, "sha256": file_sha256(path, use_cache=False), "seed": seed, "scale": scale,
            "train_seconds": round(time.perf_counter() - t0, 1), "log": log, "examples": examples,
            "parameters": sum(p.numel() for p in model.parameters()),
            "config": {k: v for k, v in config.items() if k != "vocab"},
            **({"vocab_size": len(config["vocab"])} if "vocab" in config else {})}
    record.update(scale=scale, recipe=asdict(recipe), data=asdict(data) if scale != "demo" else {
        "worlds": {"seeds": list(recipe.world_seeds), "videos": recipe.world_videos, "frames": recipe.world_frames,
                   "size": list(recipe.world_size), "note": "OphSim seeds reserved for the detectors"}},
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
                                          for k in ("frame_epochs", "video_epochs", "text_epochs")}})


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
        train(kinds, Path(args.out), demo_data(work, recipe), recipe, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
