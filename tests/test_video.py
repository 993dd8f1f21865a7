"""Video I/O: encode/decode round trips, frame selection, metadata, and every kind of unreadable file."""
from __future__ import annotations

import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophora.data.video import (
    AllFrames,
    Consecutive,
    Resample,
    Strided,
    Uniform,
    VideoDecodeError,
    VideoWriter,
    probe,
    read_video,
    write_video,
)


def smooth_clip(num_frames: int = 24, height: int = 64, width: int = 96) -> np.ndarray:
    """A moving colour gradient with a bright square: uint8 [T, H, W, 3], content H.264 keeps well."""
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(num_frames):
        r = x * 200 / width + 2 * t
        g = y * 255 / height
        b = np.full_like(r, 40 + 5 * t)
        frame = np.stack([r, g, b], -1)
        frame[10 + t % 20:20 + t % 20, 30:40] = 230
        frames.append(frame)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", smooth_clip(), fps=8)


def test_round_trip_keeps_count_fps_size_and_pixels(clip_path):
    original = smooth_clip()
    decoded = read_video(clip_path)
    assert decoded.shape == original.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(np.int16) - original.astype(np.int16))
    assert error.mean() < 3.0, error.mean()  # crf 18 plus yuv420p chroma subsampling
    assert np.percentile(error, 99) < 10


def test_probe_reads_metadata(clip_path):
    info = probe(clip_path)
    assert (info.width, info.height, info.num_frames, info.codec) == (96, 64, 24, "h264")
    assert info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(3.0, abs=0.2)


def test_non_integer_fps_round_trip(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", smooth_clip(10), fps=30000 / 1001)
    info = probe(path)
    assert info.fps == pytest.approx(29.97, abs=0.01) and info.num_frames == 10


def test_selections_pick_the_right_frames(clip_path):
    full = read_video(clip_path)
    np.testing.assert_array_equal(read_video(clip_path, Consecutive(5, offset=11)), full[11:16])
    np.testing.assert_array_equal(read_video(clip_path, Uniform(4)), full[[0, 8, 15, 23]])
    np.testing.assert_array_equal(read_video(clip_path, Resample(fps=4)), full[::2])
    np.testing.assert_array_equal(read_video(clip_path, AllFrames()), full)


def test_window_seeks_to_the_seconds_asked_for(clip_path):
    full = read_video(clip_path)
    np.testing.assert_array_equal(read_video(clip_path, window=(1.0, 2.0)), full[8:16])
    np.testing.assert_array_equal(read_video(clip_path, Consecutive(3, 2), window=(1.0, 3.0)), full[10:13])


def test_size_rescales_while_decoding(clip_path):
    small = read_video(clip_path, size=(32, 48))
    full = read_video(clip_path)
    reference = np.stack([cv2.resize(f, (48, 32), interpolation=cv2.INTER_AREA) for f in full])
    assert small.shape == (24, 32, 48, 3)
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 3.0
    assert read_video(clip_path, Uniform(2), size=(31, 47)).shape == (2, 31, 47, 3)  # odd sizes: swscale path
    assert read_video(clip_path, Uniform(2), size=(42, 42)).shape == (2, 42, 42, 3)  # H % 4 != 0: swscale path


def test_selection_longer_than_clip_names_the_file(clip_path):
    with pytest.raises(ValueError, match="clip.mp4.*needs 30 frames, the clip has 24"):
        read_video(clip_path, Consecutive(30))


@given(n=st.integers(1, 500), k=st.integers(1, 64))
def test_uniform_indices_span_the_clip(n, k):
    idx = Uniform(k).indices(n, 8.0)
    assert len(idx) == k and np.all(np.diff(idx) >= 0)
    assert (idx[0], idx[-1]) == ((0, n - 1) if k > 1 else ((n - 1) // 2,) * 2)


@given(n=st.integers(1, 500), src=st.sampled_from([8.0, 15.0, 24.0, 29.97, 60.0]), dst=st.sampled_from([1.0, 4.0, 8.0]))
def test_resample_indices_match_target_rate(n, src, dst):
    idx = Resample(dst).indices(n, src)
    assert len(idx) == int(np.floor(n * dst / src + 1e-9))
    assert np.all((idx >= 0) & (idx < n)) and np.all(np.diff(idx) >= 0)
    if len(idx) > 1:
        assert np.allclose(idx / src, np.arange(len(idx)) / dst, atol=1 / src + 1e-6)


# ------------------------------------------------------------------------------------------------------
# Unreadable files: one exception type, naming the file and the cause, never a hang.


def audio_only(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    for i in range(5):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    return path


def corrupt_files(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    cases = {
        "missing": (tmp / "missing.mp4", "does not exist"),
        "directory": (tmp, "not a regular file"),
        "empty": (tmp / "empty.mp4", "empty"),
        "text": (tmp / "notes.mp4", "not a readable video container"),
        "random bytes": (tmp / "noise.mp4", "not a readable video container"),
        "header only": (tmp / "header.mp4", "not a readable video container|no video stream|truncated"),
        "truncated half": (tmp / "half.mp4", "truncated"),
        "truncated tail": (tmp / "tail.mp4", "truncated"),
        "unknown codec": (tmp / "codec.mp4", "unsupported video codec"),
        "audio only": (audio_only(tmp / "audio.m4a"), "no video stream"),
    }
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "notes.mp4").write_text("clip id,instruction\nabc,hello\n" * 50)
    (tmp / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    (tmp / "header.mp4").write_bytes(data[:200])
    (tmp / "half.mp4").write_bytes(data[: len(data) // 2])
    (tmp / "tail.mp4").write_bytes(data[:-10])
    (tmp / "codec.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))
    return cases


def call_with_deadline(fn, seconds: float):
    """Run fn in a thread; fail the test (instead of hanging the suite) if it does not return in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"decoder still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_every_unreadable_file_raises_one_exception_naming_file_and_cause(tmp_path, clip_path):
    for name, (path, cause) in corrupt_files(tmp_path, clip_path).items():
        for reader in (lambda path=path: read_video(path), lambda path=path: read_video(path, Uniform(3))):
            with pytest.raises(VideoDecodeError, match=cause) as info:
                call_with_deadline(reader, seconds=20)
            assert info.value.path == path and str(path) in str(info.value), name


def test_probe_fails_on_non_video(tmp_path, clip_path):
    cases = corrupt_files(tmp_path, clip_path)
    for name in ("missing", "empty", "text", "unknown codec", "audio only"):
        with pytest.raises(VideoDecodeError):
            probe(cases[name][0])


# ------------------------------------------------------------------------------------------------------
# Encoding errors leave nothing behind.


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("frames, message", [
    (np.zeros((3, 63, 64, 3), np.uint8), "even height and width"),
    (np.zeros((3, 64, 64, 3), np.float32), "uint8"),
    (np.zeros((3, 64, 64), np.uint8), "uint8"),
    (np.zeros((0, 64, 64, 3), np.uint8), "no frames"),
])
def test_bad_frames_are_rejected_and_no_file_is_left(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "bad.mp4", frames, fps=8)
    assert leftovers(tmp_path) == []


def test_size_change_midway_is_rejected_and_no_file_is_left(tmp_path):
    with pytest.raises(ValueError, match="frame 2 is 32x32, earlier frames are 64x64"):
        with VideoWriter(tmp_path / "mixed.mp4", fps=8) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            writer.write(np.zeros((64, 64, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.uint8))
    assert leftovers(tmp_path) == []


def test_crash_while_writing_keeps_the_previous_file(tmp_path):
    path = write_video(tmp_path / "clip.mp4", smooth_clip(6), fps=8)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=8) as writer:
            writer.write(smooth_clip(1)[0])
            raise RuntimeError("simulated crash")
    assert path.read_bytes() == before and leftovers(tmp_path) == ["clip.mp4"]


def test_same_frames_give_the_same_file(tmp_path):
    """Determinism: a seed must give the same mp4 bytes, even between decodes that leave memory dirty."""
    frames = smooth_clip(20, 64, 80)  # width not a multiple of 64 (where x264's mbtree was not repeatable)
    digests = set()
    for _ in range(6):
        digests.add(write_video(tmp_path / "clip.mp4", frames, fps=8).read_bytes())
        read_video(tmp_path / "clip.mp4")
    assert len(digests) == 1


def test_strided_selection_positions_and_short_clips():
    assert Strided(3, 4).indices(20, 8.0).tolist() == [0, 4, 8]
    assert Strided(3, 4, position=1.0).indices(20, 8.0).tolist() == [11, 15, 19]
    with pytest.raises(ValueError, match="clip has 5 frames; 3 frames every 4 need 9"):
        Strided(3, 4).indices(5, 8.0)
    assert Strided(3, 4, repeat_last=True).indices(5, 8.0).tolist() == [0, 4, 4]
