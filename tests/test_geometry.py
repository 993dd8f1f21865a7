"""The evaluation geometry: a 1080p-shaped 30 fps real set and a 480x720-shaped 8 fps generated set reach the
detectors alike (same frame count, same spacing in seconds, same size) once a geometry is named, and are
refused without one."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.evaluate import EvalConfig, evaluate, main
from benchmarks.features.loader import VideoViews
from ophora.data.geometry import (
    GEOMETRIES,
    Geometry,
    GeometryMismatchError,
    check_compatible,
    parse_geometry,
    set_shape,
)
from ophora.data.sets import load_video_set
from ophora.data.video import read_video, write_video

REAL_FPS, FAKE_FPS = 30.0, 8.0
REAL_SIZE, FAKE_SIZE = (36, 64), (32, 48)  # 1080x1920 and 480x720 scaled down (aspects 16:9 and 3:2)
SECONDS = 2.0
BAND = 0.12  # fraction of the width at each side painted red (cut away by a centre crop to a square)
GEOMETRY = "fps=8,frames=12,size=32x32,mode=short-side-crop,filter=lanczos"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def timed_clip(fps: float, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3] over SECONDS: the grey level of frame i encodes its time (4 per 1/30 s), the outer
    BAND of the width on each side is red."""
    frames = int(round(SECONDS * fps))
    h, w = size
    grey = 4 * np.floor(np.arange(frames) / fps * 30 + 1e-6)  # the same function of time at every frame rate
    out = np.repeat(grey[:, None, None, None], 3, axis=3) * np.ones((1, h, w, 3))
    band = int(round(BAND * w))
    out[:, :, :band] = out[:, :, w - band:] = (255, 0, 0)
    return out.astype(np.uint8)


def make_sets(root: Path, n: int = 2) -> tuple[Path, Path]:
    for i in range(n):
        write_video(root / "real" / f"clip_{i}.mp4", timed_clip(REAL_FPS, REAL_SIZE), fps=REAL_FPS)
        write_video(root / "fake" / f"video_{i}.mp4", timed_clip(FAKE_FPS, FAKE_SIZE), fps=FAKE_FPS)
    return root / "real", root / "fake"


@dataclass(frozen=True)
class EveryFrame:
    """A stand-in protocol that hands the detector every frame of the clip it is given, as uint8 [T, H, W, 3]."""

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        return np.arange(num_frames)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames)


def detector_input(folder: Path, role: str, geometry: Geometry | None) -> tuple[np.ndarray, np.ndarray]:
    """(frames the detector receives from the first video, their times in seconds)."""
    video_set = load_video_set(folder)
    views = VideoViews(video_set.items, {"every": EveryFrame()}, role, seed=0, geometry=geometry)
    item = views[0]
    assert not item["errors"], item["errors"]
    source_fps = REAL_FPS if role == "real" else FAKE_FPS
    return item["inputs"]["every"].numpy(), views.timeline(video_set.items[0]) / source_fps


def test_real_1080p_30fps_and_generated_480x720_8fps_reach_the_detector_alike(tmp_path):
    real, fake = make_sets(tmp_path, n=1)
    geometry = parse_geometry(GEOMETRY)
    real_frames, real_times = detector_input(real, "real", geometry)
    fake_frames, fake_times = detector_input(fake, "fake", geometry)
    assert real_frames.shape == fake_frames.shape == (12, 32, 32, 3)  # same frame count and size
    # same spacing in seconds: frame j is the frame on screen at j / 8 s (shown from its start time until the
    # next frame's); the real clip's 12-frame window starts at a seeded whole step of 1/8 s into its 2 s
    np.testing.assert_allclose(fake_times, np.arange(12) / 8)
    offset = int(np.floor(real_times[0] * 8 + 0.5))
    wanted = (offset + np.arange(12)) / 8
    assert 0 <= offset <= 4 and np.all((real_times <= wanted + 1e-9) & (wanted < real_times + 1 / REAL_FPS))
    # and both carry the frames shown at those times: the grey of each (the centre of the native frame)
    for folder, frames, times, fps in ((real, real_frames, real_times, REAL_FPS), (fake, fake_frames, fake_times,
                                                                                 FAKE_FPS)):
        native = read_video(next(folder.glob("*.mp4")))[np.round(times * fps).astype(int)]
        h, w = native.shape[1:3]
        np.testing.assert_allclose(frames[..., 1].mean((1, 2)), native[:, :, w // 2 - h // 2:w // 2 + h // 2, 1]
                                   .mean((1, 2)), atol=1.5)
    # short-side resize and centre crop cut away the red side bands of both aspect ratios
    for frames in (real_frames, fake_frames):
        assert np.abs(frames[..., 0].astype(int) - frames[..., 1]).mean() < 3


def test_without_a_geometry_the_detector_sees_other_spacings_and_sizes(tmp_path):
    real, fake = make_sets(tmp_path, n=1)
    real_frames, real_times = detector_input(real, "real", None)
    fake_frames, fake_times = detector_input(fake, "fake", None)
    assert real_frames.shape == (60, 36, 64, 3) and fake_frames.shape == (16, 32, 48, 3)
    assert np.diff(real_times)[0] == pytest.approx(1 / 30) and np.diff(fake_times)[0] == pytest.approx(1 / 8)


def test_stretch_keeps_the_side_bands_that_a_centre_crop_cuts(tmp_path):
    real, _ = make_sets(tmp_path, n=1)
    stretched, _ = detector_input(real, "real", parse_geometry("fps=8,frames=12,size=32x32,mode=stretch"))
    red = np.abs(stretched[..., 0].astype(int) - stretched[..., 1]).mean()
    assert stretched.shape == (12, 32, 32, 3) and red > 0.3 * 255 * 2 * BAND  # the bands, squashed, remain


def test_timeline_resamples_by_time_and_draws_the_real_window_by_seed():
    geometry = Geometry("g", fps=8.0, frames=4)
    # 30 fps, 60 frames: 16 frames at 8 fps; generated videos from the start, real ones at a seeded offset
    np.testing.assert_array_equal(geometry.timeline(60, 30.0, "fake"), [0, 3, 7, 11])
    real = geometry.timeline(60, 30.0, "real", seed=5, key="a.mp4")
    assert len(real) == 4 and np.allclose(np.diff(real) / 30.0, 1 / 8, atol=1 / 30)
    np.testing.assert_array_equal(real, geometry.timeline(60, 30.0, "real", seed=5, key="a.mp4"))
    offsets = {int(geometry.timeline(60, 30.0, "real", seed=s, key="a.mp4")[0]) for s in range(20)}
    assert len(offsets) > 3  # the window moves with the seed
    # a slower source repeats frames; a video shorter than the window gives what it has
    np.testing.assert_array_equal(Geometry("up", fps=16.0).timeline(4, 8.0), [0, 0, 1, 1, 2, 2, 3, 3])
    assert len(Geometry("long", fps=8.0, frames=49).timeline(16, 8.0)) == 16


def test_geometries_parse_by_name_and_fields_and_refuse_unknowns():
    endora = parse_geometry("endora-128")
    assert endora is GEOMETRIES["endora-128"] and endora.size == (128, 128) and endora.filter == "lanczos"
    assert endora.summary() == "endora-128: 8 fps, 16 frames, 128x128 (short-side-crop, lanczos)"
    custom = parse_geometry("fps=10,frames=8,size=64x96,filter=bicubic")
    assert (custom.name, custom.fps, custom.frames, custom.size, custom.mode) == \
        ("custom", 10.0, 8, (64, 96), "short-side-crop")
    assert parse_geometry(custom.to_dict()) == custom  # a result's record reads back
    assert parse_geometry("native").is_native
    with pytest.raises(ValueError, match="endora-128"):
        parse_geometry("endora128")
    with pytest.raises(ValueError, match="filter must be one of"):
        parse_geometry("size=32x32,filter=sinc")
    with pytest.raises(ValueError, match="needs a size"):
        parse_geometry("mode=stretch")


def test_sets_that_differ_in_rate_or_aspect_are_refused_naming_both_and_the_flag(tmp_path):
    real, fake = make_sets(tmp_path, n=1)
    shapes = [(f"real set {str(real)!r}", set_shape(load_video_set(real))),
              (f"generated set {str(fake)!r}", set_shape(load_video_set(fake)))]
    with pytest.raises(GeometryMismatchError) as caught:
        check_compatible(shapes)
    message = str(caught.value)
    for text in (str(real), str(fake), "30 fps, 64x36 (aspect 1.778)", "8 fps, 48x32 (aspect 1.500)",
                 "frame rate and aspect ratio", "--geometry"):
        assert text in message
    check_compatible(shapes[:1] * 2)  # a set agrees with itself


def test_evaluate_refuses_without_a_geometry_and_says_so_in_one_line(tmp_path, capsys):
    real, fake = make_sets(tmp_path, n=1)
    with pytest.raises(GeometryMismatchError, match="--geometry"):
        evaluate(EvalConfig(str(real), str(fake), metrics=("fid",), bootstrap=0, progress=False, workers=0))
    code = main(["--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "r.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the real set") and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_evaluate_with_a_geometry_scores_both_sets_and_records_it(tmp_path, capsys):
    real, fake = make_sets(tmp_path, n=3)
    out = tmp_path / "r.json"
    code = main(["--real", str(real), "--fake", str(fake), "--geometry", GEOMETRY, "--metrics", "fid,fvd",
                 "--protocol", "fvd=fvd/ophsim-surgical", "--bootstrap", "0", "--workers", "0", "--quiet",
                 "--fid-frames", "4", "--n-real", "2", "--fd-infinity", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(out.read_text())
    assert result["geometry"] == parse_geometry(GEOMETRY).to_dict()
    assert result["n"] == {"real": 2, "fake": 3, "drawn_with_seed": 0, "real_drawn": True, "fake_drawn": False}
    assert result["inputs"]["real"]["videos_in_set"] == 3 and result["inputs"]["real"]["videos"] == 2
    assert result["inputs"]["real"]["header_shape"]["fps"] == REAL_FPS
    # FVD's 16-frame clip does not fit the geometry's 12 frames: every video is listed, not padded
    assert result["metrics"]["fvd"]["value"] is None and len(result["failed"]) == 5
    assert "12 frames" in result["failed"][0]["reason"]
    assert result["metrics"]["fid"]["n_real"] == 2 and result["metrics"]["fid"]["n_fake"] == 3
    extrapolated = result["metrics"]["fid"]["fd_infinity"]  # subsets of 2 and 3 of the 3 generated videos
    assert extrapolated["sizes"] == [2, 3]  # at n = N: the FID itself (from float16 rows: to 1%)
    assert extrapolated["values"][-1] == pytest.approx(result["metrics"]["fid"]["value"], rel=1e-2)
    assert "fid: extrapolated to N = infinity (Chong and Forsyth)" in printed
    assert "note: geometry custom: 8 fps, 12 frames, 32x32 (short-side-crop, lanczos)" in printed
    assert "equal N: 2 of the 3 real videos and all 3 generated videos, drawn with seed 0" in printed
