"""Benchmarks of the evaluation harness (outside the default test run): FVD throughput and peak memory.

Run with ``tox -e bench``, or for the evaluation figures alone (with the Fréchet benchmarks, so every ratio
comes from one run)::

    pytest tests/perf/test_perf_frechet.py tests/perf/test_perf_eval.py --benchmark-only \
        --benchmark-json results/perf/benchmarks_eval.json
    python -m ophora.results perf-report results/perf/benchmarks_eval.json

Throughput (issue 3, item 11: end-to-end FVD at least 85% of the bare detector's forward throughput). The
same OphSim clips (16 frames at 128x128, so a real video's one clip is the whole video, offset 0) are
scored two ways, each in batches of 8 videos and with the same torch thread count:

- ``test_fvd_bare_forward``, the floor: the random-init I3D called exactly as ``fvd/stylegan-v`` calls it
  (uint8 [8, 3, 16, 128, 128], ``rescale=True, resize=True, return_features=True``, so the 224x224 resize
  runs inside the detector) on clips decoded and stacked beforehand, untimed;
- ``test_fvd_harness``: ``benchmarks.evaluate.evaluate`` with ``metrics=("fvd",)`` on the mp4 files, real
  set then fake set: decoding in 2 DataLoader workers, batched detector calls, float64 statistics, the
  distance; the detector is passed in already loaded, the reference cache is off and so is the bootstrap
  (``bootstrap=0``; its cost is per metric, not per video).

Both run for the full I3D (the protocol's network, 8 + 8 clips) and the tiny one (channels / 8, 16 + 16
clips), where the detector is cheap and the data path's overhead shows. Each harness benchmark checks its
FVD against the distance computed from the bare forward's features.

Memory (peak for 512 videos within 15% of 64): ``test_fvd_peak_memory[N]`` runs the default CLI settings
(FVD, bootstrap 200) in a fresh subprocess on N real and N fake videos (16 frames at 64x64, tiny I3D) and
records peak resident memory: the main process (``ru_maxrss``), the DataLoader workers (largest) and the
sampled sum over the process tree. Figures go to ``extra_info`` and to ``results/perf/memory_eval.json``
(the Markdown report does not show extra fields).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.detectors.i3d import DETECTOR_KWARGS, load_i3d
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics.frechet import frechet_distance
from ophora.data.video import read_video, write_video
from ophora.results import write_json
from ophora.sim.patient import sample_patient
from ophora.sim.render import render_phase

ROOT = Path(__file__).resolve().parents[2]
BATCH = 8
FRAMES = 16
THREADS = torch.get_num_threads()
# detector variant -> videos per set (real and fake each), rounds
THROUGHPUT = {"full": (8, 2), "tiny": (16, 5)}
MEMORY_SIZES = [64, 512]


def _ophsim_clip(seed: int, size: tuple[int, int]) -> np.ndarray:
    """One 16-frame OphSim clip: patient ``seed``, phase seed % 12."""
    frames, _ = render_phase(sample_patient(seed, "bench-eval"), seed % 12, FRAMES, size, seed)
    return frames


def _write_set(folder: Path, seeds: list[int], size: tuple[int, int]) -> list[Path]:
    return [write_video(folder / f"clip_{i:04d}.mp4", _ophsim_clip(s, size), fps=8) for i, s in enumerate(seeds)]


# ---------------------------------------------------------------------------------------------------------
# throughput: bare detector forward vs the harness, on the same clips


@pytest.fixture(scope="module")
def clip_sets(tmp_path_factory):
    """Per variant: real and fake folders of 16-frame 128x128 mp4s and their decoded uint8 [N, 3, 16, H, W]."""
    root = tmp_path_factory.mktemp("eval-throughput")
    out = {}
    for variant, (n, _) in THROUGHPUT.items():
        sets = {}
        for role, base in (("real", 0), ("fake", 1000)):
            paths = _write_set(root / variant / role, [base + i for i in range(n)], (128, 128))
            clips = torch.stack([torch.from_numpy(read_video(p)).permute(3, 0, 1, 2).contiguous() for p in paths])
            assert clips.shape == (n, 3, FRAMES, 128, 128) and clips.dtype == torch.uint8
            sets[role] = (root / variant / role, clips)
        out[variant] = sets
    return out


@pytest.fixture(scope="module", params=list(THROUGHPUT), ids=list(THROUGHPUT))
def variant(request, clip_sets):
    name = request.param
    detector, info = load_i3d("random-init", seed=0, tiny=name == "tiny")
    with torch.inference_mode():  # one-off kernel set-up, outside both timings
        detector(clip_sets[name]["real"][1][:1], **DETECTOR_KWARGS)
    return {"name": name, "detector": detector, "info": info, "sets": clip_sets[name], "rounds": THROUGHPUT[name][1],
            "features": {}}


def bare_forward(detector, clips: torch.Tensor) -> torch.Tensor:
    """Features float32 [N, 400] of pre-stacked uint8 clips, in batches of BATCH, as fvd/stylegan-v calls it."""
    with torch.inference_mode():
        return torch.cat([detector(clips[i:i + BATCH], **DETECTOR_KWARGS).float()
                          for i in range(0, len(clips), BATCH)])


def _fvd_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FVD as fvd/stylegan-v defines it (1/N covariance) from two feature matrices."""
    stats = []
    for f in (real, fake):
        x = f.double().numpy()
        stats += [x.mean(0), np.cov(x, rowvar=False, bias=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # N < d: rank-deficient covariances, expected here
        return frechet_distance(*stats)


def _common_info(benchmark, variant, n_clips):
    benchmark.extra_info.update(items=n_clips, unit="clips", batch=BATCH, torch_threads=torch.get_num_threads(),
                                detector=variant["info"].identifier, clip="16x128x128 uint8, resized to 224 in the I3D",
                                load_average=os.getloadavg()[0])


def test_fvd_bare_forward(benchmark, variant):
    real, fake = variant["sets"]["real"][1], variant["sets"]["fake"][1]
    _common_info(benchmark, variant, len(real) + len(fake))
    assert torch.get_num_threads() == THREADS

    def run():
        return bare_forward(variant["detector"], real), bare_forward(variant["detector"], fake)

    real_f, fake_f = benchmark.pedantic(run, rounds=variant["rounds"], iterations=1)
    assert real_f.shape == (len(real), 400) and torch.isfinite(real_f).all() and torch.isfinite(fake_f).all()
    variant["features"] = {"real": real_f, "fake": fake_f}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fvd_harness(benchmark, variant, tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    (real_dir, real), (fake_dir, fake) = variant["sets"]["real"], variant["sets"]["fake"]
    _common_info(benchmark, variant, len(real) + len(fake))
    benchmark.extra_info.update(baseline=f"test_fvd_bare_forward[{variant['name']}]", workers=2)
    assert torch.get_num_threads() == THREADS
    cfg = EvalConfig(real=str(real_dir), fake=str(fake_dir), metrics=("fvd",), tiny_i3d=variant["name"] == "tiny",
                     batch_size=BATCH, workers=2, no_cache=True, bootstrap=0, progress=False)
    result = benchmark.pedantic(evaluate, args=(cfg,), kwargs={"detectors": {"fvd": (variant["detector"],
                                                                                     variant["info"])}},
                                rounds=variant["rounds"], iterations=1)
    fvd = result["metrics"]["fvd"]
    assert fvd["n_real"] == len(real) and fvd["n_fake"] == len(fake) and not result["failed"]
    benchmark.extra_info["timings_s"] = result["timings_s"]
    features = variant["features"] or {"real": bare_forward(variant["detector"], real),
                                       "fake": bare_forward(variant["detector"], fake)}
    assert fvd["value"] == pytest.approx(_fvd_from_features(features["real"], features["fake"]), rel=1e-4)


# ---------------------------------------------------------------------------------------------------------
# peak memory: 512 videos vs 64, each in a fresh process

_MEMORY_SCRIPT = r"""
import json, os, resource, sys, threading, time
import psutil
args = json.loads(sys.argv[1])
import torch
from benchmarks.detectors.i3d import load_i3d
from benchmarks.evaluate import EvalConfig, evaluate

me = psutil.Process()
peak = {"tree": 0}
done = threading.Event()

def sample():
    while not done.is_set():
        total = 0
        for p in [me] + me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        peak["tree"] = max(peak["tree"], total)
        time.sleep(0.05)

detector = load_i3d("random-init", 0, tiny=True)
before = me.memory_info().rss
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
start = time.perf_counter()
result = evaluate(EvalConfig(real=args["real"], fake=args["fake"], metrics=("fvd",), tiny_i3d=True, batch_size=8,
                             workers=2, no_cache=True, bootstrap=200, progress=False),
                  detectors={"fvd": detector})
seconds = time.perf_counter() - start
done.set(); sampler.join()
mb = 1024.0  # ru_maxrss is in KiB on Linux
print(json.dumps({
    "rss_before_eval_mb": before / 2**20,
    "peak_rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / mb,
    "peak_rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / mb,
    "peak_rss_tree_mb": peak["tree"] / 2**20,
    "seconds": seconds,
    "fvd": result["metrics"]["fvd"]["value"],
    "n_real": result["metrics"]["fvd"]["n_real"], "n_fake": result["metrics"]["fvd"]["n_fake"],
    "ci": result["metrics"]["fvd"].get("ci"),
}))
"""


@pytest.fixture(scope="module")
def memory_sets(tmp_path_factory):
    """N real and N fake 16x64x64 OphSim-rendered videos per N; 32 rendered clips per role, each video one of
    them rolled sideways by a per-video offset (distinct files without rendering 1024 clips)."""
    root = tmp_path_factory.mktemp("eval-memory")
    n_max = max(MEMORY_SIZES)
    out = {n: {} for n in MEMORY_SIZES}
    for role, base in (("real", 0), ("fake", 5000)):
        pool = [_ophsim_clip(base + k, (64, 64)) for k in range(32)]
        for i in range(n_max):
            clip = np.roll(pool[i % 32], shift=3 * (i // 32), axis=2)
            path = write_video(root / f"{role}{n_max}" / f"clip_{i:04d}.mp4", clip, fps=8)
            for n in MEMORY_SIZES:
                if n != n_max and i < n:
                    (root / f"{role}{n}").mkdir(exist_ok=True)
                    os.link(path, root / f"{role}{n}" / path.name)
        for n in MEMORY_SIZES:
            out[n][role] = root / f"{role}{n}"
    return out


@pytest.fixture(scope="module")
def memory_figures():
    figures: dict[int, dict] = {}
    yield figures
    if len(figures) == len(MEMORY_SIZES):
        small, large = figures[min(MEMORY_SIZES)], figures[max(MEMORY_SIZES)]
        ratios = {key: large[key] / small[key] for key in ("peak_rss_main_mb", "peak_rss_tree_mb")}
        growth = {n: f["peak_rss_main_mb"] - f["rss_before_eval_mb"] for n, f in figures.items()}
        write_json(ROOT / "results" / "perf" / "memory_eval.json", {
            "what": "peak resident memory of one FVD evaluation (tiny random-init I3D, 16x64x64 OphSim videos, "
                    "batch 8, 2 DataLoader workers, bootstrap 200, no cache) in a fresh process, N real + N fake",
            "target": "peak for 512 videos within 15% of the peak for 64 (ratio <= 1.15)",
            "runs": {str(n): f for n, f in sorted(figures.items())},
            "ratio_512_vs_64": ratios,
            "growth_during_eval_mb": {str(n): g for n, g in sorted(growth.items())},
            "met": ratios["peak_rss_main_mb"] <= 1.15 and ratios["peak_rss_tree_mb"] <= 1.15,
        })


@pytest.mark.parametrize("n", MEMORY_SIZES, ids=[str(n) for n in MEMORY_SIZES])
def test_fvd_peak_memory(benchmark, n, memory_sets, memory_figures, tmp_path):
    args = json.dumps({"real": str(memory_sets[n]["real"]), "fake": str(memory_sets[n]["fake"])})
    env = {**os.environ, "OPHORA_CACHE": str(tmp_path / "cache")}

    def run():
        done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, args], capture_output=True, text=True, env=env,
                              cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    figures = benchmark.pedantic(run, rounds=1, iterations=1)
    assert figures["n_real"] == n and figures["n_fake"] == n and np.isfinite(figures["fvd"])
    assert figures["ci"] is not None and figures["ci"]["low"] <= figures["fvd"] <= figures["ci"]["high"]
    benchmark.extra_info.update(items=2 * n, unit="videos (N real + N fake, whole process)",
                                **{k: round(v, 1) for k, v in figures.items() if k.endswith("_mb")})
    memory_figures[n] = figures
