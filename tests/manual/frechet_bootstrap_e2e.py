"""End-to-end time of a default evaluation (bootstrap 200) of 24 against 24 OphSim videos with the surgical
detectors, with the Fréchet bootstrap computed by the previous per-replicate route and by the batched one-thread
route (benchmarks.metrics.fd.frechet_replicates), in one process, on the same videos. Not part of the test
suite. Run from the repository root:

    python tests/manual/frechet_bootstrap_e2e.py [--videos 24] [--out results/perf/frechet_bootstrap_e2e.json]

Writes two folders of OphSim mp4s (33 frames, 128x128, 8 fps; video i of a set: patient seed + i, phase i % 12,
no prompts), then times ``benchmarks.evaluate.evaluate`` as ``python -m benchmarks.evaluate --real real --fake
generated --protocol fid=fid/ophsim-surgical --protocol fvd=fvd/ophsim-surgical --no-cache`` runs it (metrics fid
and fvd, since the generated set has no prompts; bootstrap 200): once with the current code, once with
``frechet_replicates`` replaced by the route used up to commit f59a63b. The intervals of both runs are compared
(endpoints within 1e-8 of the replicates' mean; exit status 1 otherwise) and the machine's ``uptime`` is recorded
around each run.
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

import benchmarks.metrics.fd as fd
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics.frechet import frechet_distance
from ophora.data.video import write_video
from ophora.results import write_json
from ophora.sim.patient import sample_patient
from ophora.sim.render import render_phase

METRICS = ("fid", "fvd")
PROTOCOLS = tuple((m, f"{m}/ophsim-surgical") for m in METRICS)


def previous_replicates(real, fake, *, divisor, n_boot, seed):
    """frechet_replicates as it was up to commit f59a63b (one replicate at a time, numpy/scipy default threads)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        mu_r, a_r = real.weighted(real.resample(rng), divisor)
        mu_f, a_f = fake.weighted(fake.resample(rng), divisor)
        diff = mu_r - mu_f
        if max(len(a_r), len(a_f)) < a_r.shape[1]:
            nuclear = np.linalg.svd(a_r @ a_f.T, compute_uv=False).sum()
            out[b] = diff @ diff + np.einsum("ij,ij->", a_r, a_r) + np.einsum("ij,ij->", a_f, a_f) - 2 * nuclear
        else:
            s_r, s_f = a_r.T @ a_r, a_f.T @ a_f
            out[b] = frechet_distance(mu_r, (s_r + s_r.T) / 2, mu_f, (s_f + s_f.T) / 2, warn_rank=False)
    return out


def write_set(folder: Path, n: int, seed: int) -> None:
    for i in range(n):
        frames, _ = render_phase(sample_patient(seed + i, "bootstrap-e2e"), i % 12, 33, (128, 128), seed + i)
        write_video(folder / f"video_{i:03d}.mp4", frames, fps=8)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed_run(cfg: EvalConfig, route: str) -> dict:
    current = fd.frechet_replicates
    if route == "previous":
        fd.frechet_replicates = previous_replicates
    try:
        before = uptime()
        start = time.perf_counter()
        result = evaluate(cfg)
        seconds = time.perf_counter() - start
    finally:
        fd.frechet_replicates = current
    return {"route": route, "seconds": seconds, "timings_s": result["timings_s"], "uptime_before": before,
            "uptime_after": uptime(),
            "metrics": {m: {k: result["metrics"][m].get(k) for k in ("value", "n_real", "n_fake", "ci")}
                        for m in METRICS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24, help="videos per set (default 24)")
    parser.add_argument("--out", type=Path, default=Path("results/perf/frechet_bootstrap_e2e.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_set(work / "real", args.videos, 9501)
        write_set(work / "generated", args.videos, 9601)
        cfg = EvalConfig(real=str(work / "real"), fake=str(work / "generated"), metrics=METRICS, protocols=PROTOCOLS,
                         no_cache=True, progress=False)
        runs = [timed_run(cfg, "batched"), timed_run(cfg, "previous")]
    # Endpoints differ by at most twice the largest replicate difference, so they are compared relative to the
    # replicates' scale (their mean, point + bootstrap bias); relative to the endpoint itself as well, for the record.
    worst, worst_own = 0.0, 0.0
    for m in METRICS:
        new, old = runs[0]["metrics"][m]["ci"], runs[1]["metrics"][m]["ci"]
        scale = abs(runs[1]["metrics"][m]["value"] + old["bootstrap_bias"])
        for key in ("low", "high"):
            worst = max(worst, abs(new[key] - old[key]) / scale)
            worst_own = max(worst_own, abs(new[key] - old[key]) / abs(old[key]))
    figures = {"what": f"benchmarks.evaluate on {args.videos} vs {args.videos} OphSim videos (33 frames, 128x128), "
                       "fid and fvd on the surgical detectors, bootstrap 200, reference cache off",
               "runs": runs, "speedup": runs[1]["seconds"] / runs[0]["seconds"],
               "interval_max_difference_relative_to_replicate_mean": worst,
               "interval_max_difference_relative_to_endpoint": worst_own, "torch_threads": torch.get_num_threads(),
               "cpus": len(os.sched_getaffinity(0)),
               "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    write_json(args.out, figures, config={"videos": args.videos, "frames": 33, "size": [128, 128], "bootstrap": 200})
    for run in runs:
        print(f"{run['route']}: {run['seconds']:.1f} s, stages {run['timings_s']}; {run['uptime_before']}")
    print(f"interval endpoints agree to {worst:.2e} of the replicates' mean ({worst_own:.2e} of the endpoint); "
          f"wrote {args.out}")
    return 0 if worst <= 1e-8 else 1


if __name__ == "__main__":
    sys.exit(main())
