"""Benchmark (outside the default test run): FVMD with the Lucas-Kanade tracker against FVD with the full I3D, side by
side on the same 24 real and 24 generated OphSim videos (issue 21: ``fvmd`` costs no more than FVD with the full
I3D on 2 cores).

Run with ``pytest tests/perf/test_perf_fvmd.py --benchmark-only`` (or ``tox -e bench``). Each metric is scored by
``benchmarks.evaluate.evaluate`` end to end on the mp4 files (real set then fake set): decoding in 2 DataLoader
workers, the detector (the tracker, or the random-init full I3D passed in already loaded, as
``tests/perf/test_perf_eval.py`` does), float64 statistics, the distance; reference cache and bootstrap off. The
videos are 16-frame OphSim phase clips at 64x64 (the sanity suite's world size), so each is one FVD clip and
one FVMD window. The two timings and their ratio go to ``extra_info`` and to ``results/perf/fvmd_vs_fvd.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from benchmarks.detectors.i3d import load_i3d
from benchmarks.evaluate import EvalConfig, evaluate
from ophora.data.video import write_video
from ophora.results import write_json
from ophora.sim.patient import sample_patient
from ophora.sim.render import render_phase

ROOT = Path(__file__).resolve().parents[2]
VIDEOS, FRAMES, SIZE = 24, 16, (64, 64)
TIMES: dict[str, float] = {}


def _write_set(folder: Path, seeds: range) -> Path:
    for i, seed in enumerate(seeds):
        frames, _ = render_phase(sample_patient(seed, "bench-fvmd"), seed % 12, FRAMES, SIZE, seed)
        write_video(folder / f"clip_{i:04d}.mp4", frames, fps=8)
    return folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fvmd-vs-fvd")
    return _write_set(root / "real", range(VIDEOS)), _write_set(root / "fake", range(100, 100 + VIDEOS))


def _score(metric: str, sets, detectors=None) -> dict:
    real, fake = sets
    cfg = EvalConfig(real=str(real), fake=str(fake), metrics=(metric,), weights="random-init", bootstrap=0,
                     no_cache=True, workers=2, batch_size=8, progress=False)
    start = time.perf_counter()
    payload = evaluate(cfg, detectors=detectors)
    TIMES[metric] = time.perf_counter() - start
    return payload["metrics"][metric]


@pytest.mark.slow
def test_fvd_full_i3d(benchmark, sets):
    detector = load_i3d("random-init", 0, tiny=False)
    benchmark.group = "fvmd vs fvd (24 vs 24 OphSim videos)"
    result = benchmark.pedantic(_score, args=("fvd", sets, {"fvd": detector}), rounds=1, iterations=1)
    assert result["n_real"] == result["n_fake"] == VIDEOS


@pytest.mark.slow
def test_fvmd_opencv_lk(benchmark, sets):
    benchmark.group = "fvmd vs fvd (24 vs 24 OphSim videos)"
    result = benchmark.pedantic(_score, args=("fvmd", sets), rounds=1, iterations=1)
    assert result["n_real_rows"] == result["n_fake_rows"] == VIDEOS and result["value"] > 0
    if "fvd" in TIMES:
        ratio = TIMES["fvmd"] / TIMES["fvd"]
        benchmark.extra_info.update(fvd_seconds=TIMES["fvd"], fvmd_seconds=TIMES["fvmd"], ratio=ratio)
        write_json(ROOT / "results" / "perf" / "fvmd_vs_fvd.json", {
            "videos_per_set": VIDEOS, "frames": FRAMES, "size": list(SIZE), "torch_threads": torch.get_num_threads(),
            "fvd_full_i3d_seconds": round(TIMES["fvd"], 3), "fvmd_opencv_lk_seconds": round(TIMES["fvmd"], 3),
            "ratio_fvmd_over_fvd": round(ratio, 4)})
        assert ratio <= 1.0, f"FVMD took {TIMES['fvmd']:.1f} s, FVD with the full I3D {TIMES['fvd']:.1f} s"
