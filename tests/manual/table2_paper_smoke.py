"""Smoke run of Table 2's paper configuration on a CPU (not part of the test suite; about 3 minutes on 2 cores).
Run from the repository root (the OphNet2024 CSVs ship with the package, ``ophora/data/ophnet2024/``):

    python tests/manual/table2_paper_smoke.py [FOLDER]

:func:`make_assets` writes stand-ins for what the paper run needs: subsets of the real OphNet2024 challenge CSVs
(clips ending within 20 s; 2 training videos, 1 val, 1 test), untrimmed ``<video_id>.mp4`` stand-ins rendered by
OphSim (240x320, 15 fps, 20 s), ``id,name`` class-name CSVs, and folders of stand-in synthetic clips with
``manifest.jsonl`` (one per class, prompted with the paper config's template). :func:`run` then runs
``python -m downstream.table2 --config paper`` on them: full-size SlowFast-R50 and MViTv2-S (224 crops, 32 and 16
frames, on-the-fly trimming), trained from scratch for one epoch and tested with 2 temporal views (times 3 crops
of 256 for SlowFast). It checks the code path at paper scale, not numbers.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ophora.data.manifests import GeneratedVideo, append_generated, bundled_ophnet_csv
from ophora.data.video import write_video
from ophora.sim.patient import sample_patient
from ophora.sim.render import render_phase

CSVS = {"operation": "OphNet2024_loca_challenge.csv", "phase": "OphNet2024_loca_challenge_phase.csv"}
CLASSES = {"phase": 52, "operation": 107}
MAX_END_S, FPS = 20.0, 15


def _subset(task: str, root: Path) -> list[str]:
    """Rows of 2 training, 1 val and 1 test video whose clips end within MAX_END_S; returns the video ids."""
    frame = pd.read_csv(bundled_ophnet_csv(CSVS[task]), encoding="utf-8-sig")
    short = frame[frame["end"] <= MAX_END_S]
    keep = []
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        keep += short[short["split"] == split]["video_id"].drop_duplicates().tolist()[:count]
    short[short["video_id"].isin(keep)].to_csv(root / f"{task}.csv", index=False)
    return keep


def make_assets(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    videos = sorted({v for task in CSVS for v in _subset(task, root)})
    (root / "videos").mkdir(exist_ok=True)
    for i, video_id in enumerate(videos):
        frames = np.concatenate([render_phase(sample_patient(i, video_id), p, 60, (240, 320), 0)[0] for p in range(5)])
        write_video(root / "videos" / f"{video_id}.mp4", frames, fps=FPS)
    for task, count in CLASSES.items():
        with open(root / f"{task}_names.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "name"])
            writer.writerows([i, f"{task} {i}"] for i in range(count))
        out = root / f"synthetic_{task}"
        for c in range(count):
            path = out / f"{c:05d}_00.mp4"
            if path.exists():
                continue
            write_video(path, render_phase(sample_patient(100 + c, f"syn{c}"), c % 12, 32, (128, 128), 0)[0], 8.0)
            append_generated(out, GeneratedVideo(path, f"Cataract surgery video, {task} {c}.", c, "stand-in",
                                                 "0" * 64, {"frames": 32}))


def run(root: Path) -> int:
    from downstream.table2.__main__ import main

    synthetic = f"{{phase: {root}/synthetic_phase, operation: {root}/synthetic_operation}}"
    names = f"{{phase: {root}/phase_names.csv, operation: {root}/operation_names.csv}}"
    small = "{epochs: 1, warmup_epochs: 0, test_views: 2, batch_size: 4, eval_batch_size: 2, workers: 0, weights: none}"
    sets = [f"dataset.csv.phase={root}/phase.csv", f"dataset.csv.operation={root}/operation.csv",
            f"dataset.videos_root={root}/videos", "rows.1.generator=external", f"rows.1.model={synthetic}",
            f"rows.2.model={synthetic}", f"rows.1.class_names={names}", f"rows.2.class_names={names}",
            "rows.1.clips_per_class=1", "rows.2.clips_per_class=1", f"classifiers.0.overrides={small}",
            f"classifiers.1.overrides={small}"]
    argv = ["--config", "paper", "--work", f"{root}/work", "--out", f"{root}/out", "--threads", "2"]
    for item in sets:
        argv += ["--set", item]
    return main(argv)


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/table2_paper_smoke").absolute()
    make_assets(folder)
    sys.exit(run(folder))
