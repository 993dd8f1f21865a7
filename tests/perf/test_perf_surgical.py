"""Benchmark (issue 15's speed target): 24 against 24 OphSim videos scored with the surgical detectors that ship
with the suite, side by side with today's default full-size random-init detectors (outside the default test run).

    pytest tests/perf/test_perf_surgical.py --benchmark-only --benchmark-json results/perf/benchmarks_surgical.json
    python -m ophora.results perf-report results/perf/benchmarks_surgical.json

Both benchmarks call ``benchmarks.evaluate.evaluate`` once (one round: the full-size run takes minutes on 2
cores) on the same files, in the demo's geometry: 24 real OphSim clips of 24 frames and 24 generated-like
OphSim clips of 17 frames (Table 1 demo's held-out clips and tiny Ophora's length), 64x64, with a
``manifest.jsonl`` whose prompts are the clips' phase prompts. The settings are ``EvalConfig``'s defaults
(FID, FVD and CLIPScore; bootstrap 200; 2 DataLoader workers) with the reference cache off, so each run loads
its detectors, extracts both sets and computes the metrics and their intervals:

- ``test_eval_default_detectors``: the default protocols with random-init weights: ``fid/pytorch-fid``
  (pytorch-fid's FID Inception at 299x299, 8 frames per video), ``fvd/stylegan-v`` (the full I3D at 224x224),
  ``clipscore/open_clip`` (ViT-L-14 at 224x224, 4 frames per video);
- ``test_eval_surgical_detectors``: ``fid|fvd|clipscore/ophsim-surgical``, the shipped frame classifier, (2+1)D
  video classifier and dual encoder at 64x64 (``--protocol METRIC=METRIC/ophsim-surgical``).

Target: the surgical run at least 5x faster (the Markdown table's "vs baseline" column). The machine is shared:
each benchmark records the 1-minute load average before and after its run and ``uptime``; the module writes
``results/perf/surgical_speed.json`` with both runs' stage timings and the ratio.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.evaluate import EvalConfig, evaluate
from ophora.data.manifests.generated import GeneratedVideo, write_generated
from ophora.data.video import write_video
from ophora.results import write_json
from ophora.sim.patient import sample_patient
from ophora.sim.phases import phases
from ophora.sim.render import render_phase

ROOT = Path(__file__).resolve().parents[2]
N_VIDEOS = 24
SIZE = (64, 64)
REAL_FRAMES, FAKE_FRAMES = 24, 17
METRICS = ("fid", "fvd", "clipscore")
SURGICAL = tuple((m, f"{m}/ophsim-surgical") for m in METRICS)


def write_ophsim_set(folder: Path, n: int, frames: int, size: tuple[int, int], base_seed: int,
                     prompts: bool) -> list[Path]:
    """``n`` OphSim clips (patient ``base_seed + i // 12``, phase ``i % 12``) as mp4 files at 8 fps; with
    ``prompts`` a ``manifest.jsonl`` giving each clip its phase prompt (a generated set)."""
    paths, records = [], []
    for i in range(n):
        phase = phases()[i % 12]
        clip, _ = render_phase(sample_patient(base_seed + i // 12, "bench-surgical"), phase.phase_id, frames, size,
                               base_seed + i, clip_key=i)
        paths.append(write_video(folder / f"clip_{i:03d}.mp4", clip, fps=8))
        records.append(GeneratedVideo(paths[-1], phase.phase_prompt, i, "ophsim", "0" * 8, {"fps": 8}))
    if prompts:
        write_generated(folder, records)
    return paths


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def ophsim_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-surgical")
    write_ophsim_set(root / "real", N_VIDEOS, REAL_FRAMES, SIZE, 9100, prompts=False)
    write_ophsim_set(root / "fake", N_VIDEOS, FAKE_FRAMES, SIZE, 9200, prompts=True)
    return root / "real", root / "fake"


@pytest.fixture(scope="module")
def figures():
    runs: dict[str, dict] = {}
    yield runs
    if {"default", "surgical"} <= set(runs):
        ratio = runs["default"]["seconds"] / runs["surgical"]["seconds"]
        write_json(ROOT / "results" / "perf" / "surgical_speed.json", {
            "what": f"benchmarks.evaluate on {N_VIDEOS} real ({REAL_FRAMES} frames) against {N_VIDEOS} generated "
                    f"({FAKE_FRAMES} frames) OphSim videos at {SIZE[0]}x{SIZE[1]}: FID, FVD and CLIPScore, "
                    "bootstrap 200, 2 DataLoader workers, reference cache off, one run each, detectors loaded "
                    "inside the timed call",
            "target": "surgical detectors at least 5x faster than the default full-size random-init ones",
            "runs": runs,
            "speedup_default_over_surgical": ratio,
            "met": ratio >= 5.0,
            "torch_threads": torch.get_num_threads(),
            "note": "shared 2-core machine: compare the load averages recorded with each run",
        })


def _run(benchmark, figures, name: str, cfg: EvalConfig) -> dict:
    load_before, up_before = os.getloadavg()[0], uptime()
    start = time.perf_counter()
    result = benchmark.pedantic(evaluate, args=(cfg,), rounds=1, iterations=1)
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    detectors = {m: result["metrics"][m]["detector"]["identifier"] for m in METRICS}
    benchmark.extra_info.update(items=2 * N_VIDEOS, unit="videos", torch_threads=torch.get_num_threads(),
                                load_average_before=load_before, load_average_after=load_after, uptime=up_before,
                                detectors=detectors, timings_s=result["timings_s"])
    for metric in METRICS:
        record = result["metrics"][metric]
        assert record["n_fake"] == N_VIDEOS and np.isfinite(record["value"]), (metric, record)
        assert record.get("n_real", N_VIDEOS) == N_VIDEOS, (metric, record)  # CLIPScore has no real set
    assert not result["failed"]
    figures[name] = {"seconds": seconds, "protocols": {m: result["metrics"][m]["protocol"]["name"] for m in METRICS},
                     "detectors": detectors, "timings_s": result["timings_s"], "load_average_1min_before": load_before,
                     "load_average_1min_after": load_after, "uptime_before": up_before, "uptime_after": uptime(),
                     "values": {m: result["metrics"][m]["value"] for m in METRICS}}
    return result


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_eval_default_detectors(benchmark, ophsim_sets, figures, tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    real, fake = ophsim_sets
    cfg = EvalConfig(real=str(real), fake=str(fake), metrics=METRICS, no_cache=True, progress=False)
    assert (cfg.weights, cfg.clip_model, cfg.tiny_i3d, cfg.fid_frames) == ("random-init", "ViT-L-14", False, None)
    result = _run(benchmark, figures, "default", cfg)
    assert result["metrics"]["fid"]["protocol"]["name"] == "fid/pytorch-fid"
    assert result["metrics"]["fvd"]["detector"]["identifier"] == "random-init:i3d:seed=0"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_eval_surgical_detectors(benchmark, ophsim_sets, figures, tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    real, fake = ophsim_sets
    cfg = EvalConfig(real=str(real), fake=str(fake), metrics=METRICS, protocols=SURGICAL, no_cache=True,
                     progress=False)
    benchmark.extra_info["baseline"] = "test_eval_default_detectors"
    result = _run(benchmark, figures, "surgical", cfg)
    assert {result["metrics"][m]["protocol"]["name"] for m in METRICS} == {p for _, p in SURGICAL}
