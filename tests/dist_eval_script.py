"""Two evaluations in one launch, for tests/test_evaluate_dist.py: run it with ``python`` (one process) or
``torchrun --standalone --nproc_per_node 2`` (gloo on CPU). Writes OUT/miss.json (reference statistics
extracted, sharded, then cached) and OUT/hit.json (reference from the cache; the fake set extracted again).

    python tests/dist_eval_script.py REAL FAKE OUT
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmarks.detectors.clip import TINY_MODEL, load_clip
from benchmarks.detectors.i3d import load_i3d
from benchmarks.evaluate import EvalConfig, evaluate


def main(real: str, fake: str, out: str) -> None:
    torch.set_num_threads(1)  # identical per-video float32 features in every process layout
    clip = load_clip(TINY_MODEL, "random-init", seed=0)
    detectors = {"fvd": load_i3d("random-init", seed=0, tiny=True), "clipscore": (clip, clip.info)}
    for name in ("miss", "hit"):
        cfg = EvalConfig(real, fake, metrics=("fvd", "clipscore"), tiny_i3d=True, clip_model=TINY_MODEL,
                         clip_frames=2, batch_size=1, workers=0, bootstrap=20, seed=4, progress=False,
                         out=str(Path(out) / f"{name}.json"))
        evaluate(cfg, detectors=detectors)


if __name__ == "__main__":
    main(*sys.argv[1:4])
