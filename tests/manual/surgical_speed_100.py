"""How long a user's own 100 against 100 videos take with the surgical detectors (issue 15: "about a minute on
2 cores"). Not part of the test suite. Run from the repository root:

    python tests/manual/surgical_speed_100.py [--videos 100] [--size 480x720] [--frames 49] [--work DIR]
        [--out results/perf/surgical_user_100.json]

Writes two folders of OphSim mp4s at 8 fps in the given geometry (default: Ophora's output, 480x720, 49
frames): ``real/`` and ``generated/`` (with a ``manifest.jsonl`` whose prompts are each clip's phase prompt).
To keep the set-up short, 12 clips per set are rendered (one per phase, other patients for each set) and each
of the N videos is one of them shifted sideways by a per-video offset, so every file differs. Then it times one
``benchmarks.evaluate.evaluate`` call as ``python -m benchmarks.evaluate --real real --fake generated
--metrics fid,fvd,clipscore --protocol fid=fid/ophsim-surgical --protocol fvd=fvd/ophsim-surgical --protocol
clipscore=clipscore/ophsim-surgical --no-cache`` runs it (defaults otherwise: bootstrap 200, 2 DataLoader
workers): detector loading, decoding, features, metrics and intervals. The machine's ``uptime`` before and after
goes into the JSON beside the figures, with the stage timings and the torch thread count.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.evaluate import EvalConfig, evaluate
from ophora.data.manifests.generated import GeneratedVideo, write_generated
from ophora.data.video import write_video
from ophora.results import write_json
from ophora.sim.patient import sample_patient
from ophora.sim.phases import phases
from ophora.sim.render import render_phase

METRICS = ("fid", "fvd", "clipscore")
SURGICAL = tuple((m, f"{m}/ophsim-surgical") for m in METRICS)


def write_set(folder: Path, n: int, frames: int, size: tuple[int, int], seed: int, prompts: bool) -> float:
    """``n`` videos from 12 rendered clips (one per phase), video i = clip i % 12 rolled by 5 * (i // 12) pixels
    along the width; returns the seconds spent (0.0 when ``folder`` already holds them: a set written by an
    earlier run with ``--work`` is reused)."""
    done = folder / "manifest.jsonl" if prompts else folder / f"video_{n - 1:03d}.mp4"
    if done.is_file() and len(list(folder.glob("video_*.mp4"))) == n:
        return 0.0
    start = time.perf_counter()
    pool = [render_phase(sample_patient(seed, "manual-speed"), phase.phase_id, frames, size, seed + k, clip_key=k)[0]
            for k, phase in enumerate(phases())]
    records = []
    for i in range(n):
        clip = np.roll(pool[i % 12], shift=5 * (i // 12), axis=2)
        path = write_video(folder / f"video_{i:03d}.mp4", clip, fps=8)
        records.append(GeneratedVideo(path, phases()[i % 12].phase_prompt, i, "ophsim", "0" * 8, {"fps": 8}))
    if prompts:
        write_generated(folder, records)
    return time.perf_counter() - start


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100, help="videos per set (default 100)")
    parser.add_argument("--size", default="480x720", help="HxW (default 480x720, Ophora's output)")
    parser.add_argument("--frames", type=int, default=49, help="frames per video (default 49, Ophora's output)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the videos, kept and reused by a later run (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("results/perf/surgical_user_100.json"))
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        setup = {"real": write_set(work / "real", args.videos, args.frames, size, 9301, prompts=False),
                 "generated": write_set(work / "generated", args.videos, args.frames, size, 9401, prompts=True)}
        print(f"sets written in {setup['real'] + setup['generated']:.1f} s", flush=True)
        cfg = EvalConfig(real=str(work / "real"), fake=str(work / "generated"), metrics=METRICS, protocols=SURGICAL,
                         no_cache=True, progress=False)
        before, load_before = uptime(), os.getloadavg()
        start = time.perf_counter()
        result = evaluate(cfg)
        seconds = time.perf_counter() - start
        after, load_after = uptime(), os.getloadavg()
    figures = {
        "what": f"benchmarks.evaluate on {args.videos} real against {args.videos} generated OphSim videos "
                f"({args.frames} frames, {size[0]}x{size[1]}, 8 fps, mp4), surgical detectors "
                "(fid|fvd|clipscore/ophsim-surgical), bootstrap 200, 2 DataLoader workers, reference cache off, "
                "detectors loaded inside the timed call",
        "target": "about a minute on 2 cores (issue 15)",
        "seconds": seconds,
        "timings_s": result["timings_s"],
        "set_up_seconds": setup,
        "values": {m: result["metrics"][m]["value"] for m in METRICS},
        "n": {m: [result["metrics"][m].get("n_real"), result["metrics"][m]["n_fake"]] for m in METRICS},
        "failed": len(result["failed"]),
        "torch_threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "uptime_before": before, "uptime_after": after,
        "load_average_before": list(load_before), "load_average_after": list(load_after),
    }
    write_json(args.out, figures, config={"videos": args.videos, "size": list(size), "frames": args.frames})
    print(f"{seconds:.1f} s for {args.videos} + {args.videos} videos; stages {result['timings_s']}; "
          f"before: {before}; after: {after}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
