"""Benchmarks of the foundation (outside the default test run): OphSim render rate and video decode rate.

Run with ``tox -e bench`` (or ``pytest tests/perf --benchmark-only``). Decoding is compared side by side with
OpenCV's ``VideoCapture``, the reader a user would otherwise reach for.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ophora.data.video import Uniform, read_video, write_video
from ophora.sim.patient import sample_patient
from ophora.sim.render import render_phase

FRAMES = 33


@pytest.mark.parametrize("size", [(128, 128), (480, 720)], ids=["128x128", "480x720"])
def test_sim_render(benchmark, size):
    patient = sample_patient(0, "bench")
    frames = FRAMES if size[0] <= 128 else 9
    benchmark.extra_info.update(items=frames, unit="frames")
    out, _ = benchmark(render_phase, patient, 4, frames, size, 0)
    assert out.shape == (frames, *size, 3)


@pytest.fixture(scope="module")
def clip_720p(tmp_path_factory):
    patient = sample_patient(0, "bench")
    frames, _ = render_phase(patient, 2, 48, (480, 720), 0)
    return write_video(tmp_path_factory.mktemp("bench") / "clip.mp4", frames, fps=8)


def opencv_read_all(path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def test_decode_opencv_all(benchmark, clip_720p):
    benchmark.extra_info.update(items=48, unit="frames")
    assert benchmark(opencv_read_all, clip_720p).shape == (48, 480, 720, 3)


def test_decode_ophora_all(benchmark, clip_720p):
    benchmark.extra_info.update(items=48, unit="frames", baseline="test_decode_opencv_all")
    assert benchmark(read_video, clip_720p).shape == (48, 480, 720, 3)


def test_decode_ophora_uniform8(benchmark, clip_720p):
    benchmark.extra_info.update(items=8, unit="selected frames", baseline="test_decode_opencv_all")
    assert benchmark(read_video, clip_720p, Uniform(8)).shape == (8, 480, 720, 3)
