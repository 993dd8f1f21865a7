"""Benchmarks of curation's dynamics stage (outside the default test run): clips/s with 1 and 2 worker processes,
and against plain ``scenedetect.detect()`` with ContentDetector's defaults on the same clips.

Run with ``pytest tests/perf/test_perf_curation.py --benchmark-only``. The clips are OphSim clips at 480x720
(40 frames at 8 fps, about 5 s like an Ophora-160K clip). Worker pools are started and warmed before timing,
so the figures are steady-state throughput. Each worker is otherwise single-threaded (``limit_threads``).

- ``1worker-1thread`` and ``2workers-1thread``: workers that decode in one thread each, the setting in which
  adding workers is the only parallelism (scaling: 2 workers against 1; speed: 1 worker against ``detect()``).
- ``1worker``: ``ophora.curate --workers 1`` as it runs by default, decoding with every core
  (``set_decode_threads``: cores // workers FFmpeg threads).

``scenedetect.detect()`` runs with its defaults (OpenCV decoding with FFmpeg's threads on every core).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest
from scenedetect import ContentDetector, detect

from ophora.curation.config import DynamicsConfig
from ophora.curation.dynamics import DynamicsStage, set_decode_threads
from ophora.curation.executor import limit_threads, worker_context
from ophora.curation.stage import ClipItem
from ophora.data.video import write_video
from ophora.sim.patient import sample_patient
from ophora.sim.render import render_phase

CLIPS, FRAMES, SIZE = 8, 40, (480, 720)
_STAGE: dict = {}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("perf_curation")
    paths = []
    for i in range(CLIPS):
        frames, _ = render_phase(sample_patient(0, f"perf_{i}"), i % 12, FRAMES, SIZE, 0)
        paths.append(str(write_video(folder / f"clip_{i}.mp4", frames, fps=8)))
    return paths


def _init(workers: int, threads: int | None) -> None:
    limit_threads()
    set_decode_threads(workers)
    if threads is not None:
        DynamicsStage.decode_threads = threads
    _STAGE["dynamics"] = DynamicsStage(DynamicsConfig())


def _check(path: str) -> bool:
    return _STAGE["dynamics"].check(ClipItem("perf", "", path)).keep


def _scenedetect_defaults(path: str) -> int:
    return len(detect(path, ContentDetector()))


POOLS = {"1worker-1thread": (1, 1), "2workers-1thread": (2, 1), "1worker": (1, None)}
BASELINES = {"1worker-1thread": "test_dynamics_scenedetect_defaults",
             "2workers-1thread": "test_dynamics_stage[1worker-1thread]",
             "1worker": "test_dynamics_scenedetect_defaults"}
ROUNDS = 5


@pytest.fixture(scope="module", params=list(POOLS), ids=list(POOLS))
def pool(request, clips):
    workers, threads = POOLS[request.param]
    with ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_init,
                             initargs=(workers, threads)) as executor:
        list(executor.map(_check, clips[:workers]))  # start and warm every worker
        yield request.param, workers, threads, executor


def test_dynamics_scenedetect_defaults(benchmark, clips):
    benchmark.extra_info.update(items=len(clips), unit="clips")
    cuts = benchmark.pedantic(lambda: [_scenedetect_defaults(p) for p in clips], rounds=ROUNDS, iterations=1)
    assert len(cuts) == len(clips)


def test_dynamics_stage(benchmark, clips, pool):
    name, workers, threads, executor = pool
    benchmark.extra_info.update(items=len(clips), unit="clips", baseline=BASELINES[name], workers=workers,
                                decode_threads=threads or "cores // workers")
    kept = benchmark.pedantic(lambda: list(executor.map(_check, clips)), rounds=ROUNDS, iterations=1)
    assert all(kept)
