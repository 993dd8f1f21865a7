"""Any common container is a video: mp4, mov, avi, mkv, webm and gif files (written here by PyAV) and folders of
PNG or JPEG frames are read by the one reader (ophora.data.video) at the container's own frame rate (the given
one for frame folders), and found by ophora.data.sets in a folder of videos."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from ophora.data.external import ExternalVideos
from ophora.data.sets import VIDEO_SUFFIXES, load_video_set
from ophora.data.video import Consecutive, FrameScan, Resample, is_video, probe, read_video

FRAMES, HEIGHT, WIDTH = 12, 48, 64
# container -> (frame rate to write, the codecs to try in order, as (encoder, pixel format)); each container
# gets another rate, so a reader that assumed one would fail. A GIF stores frame delays in centiseconds: 10 fps
# (10 cs) is exact.
CONTAINERS = {
    "mp4": (8, [("libx264", "yuv420p"), ("mpeg4", "yuv420p")]),
    "mov": (12, [("libx264", "yuv420p"), ("mpeg4", "yuv420p")]),
    "avi": (15, [("mpeg4", "yuv420p"), ("mjpeg", "yuvj420p")]),
    "mkv": (24, [("libx264", "yuv420p"), ("ffv1", "yuv420p"), ("mpeg4", "yuv420p")]),
    "webm": (25, [("libvpx-vp9", "yuv420p"), ("libvpx", "yuv420p"), ("libaom-av1", "yuv420p")]),
    "gif": (10, [("gif", "rgb8")]),
}
MEAN_ERROR = {"gif": 40.0}  # rgb8: a fixed 3-3-2-bit palette; the lossy video codecs stay far below the default
DEFAULT_MEAN_ERROR = 8.0


def clip() -> np.ndarray:
    """uint8 [T, H, W, 3]: a gradient whose brightness changes and a bright square that moves, frame by frame."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for t in range(FRAMES):
        frame = np.stack([x * 3 + 10 * t, y * 4, np.full_like(x, 200 - 12 * t)], -1)
        frame[8:20, 4 + 4 * t:16 + 4 * t] = 250
        frames.append(np.clip(frame, 0, 255))
    return np.stack(frames).astype(np.uint8)


def write_container(path: Path, frames: np.ndarray, fps: int, codecs: list[tuple[str, str]]) -> str:
    """Encode ``frames`` into ``path`` with the first codec this PyAV build can encode; skips the test (naming
    the container and the codecs tried) when none can."""
    tried = []
    for codec, pix_fmt in codecs:
        if codec not in av.codecs_available:
            tried.append(f"{codec}: not in this build")
            continue
        try:
            with av.open(str(path), "w") as container:
                stream = container.add_stream(codec, rate=Fraction(fps))
                stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
                for frame in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            return codec
        except (av.FFmpegError, ValueError, OSError) as err:
            tried.append(f"{codec}: {err}")
            path.unlink(missing_ok=True)
    pytest.skip(f"this PyAV build ({av.__version__}) cannot write .{path.suffix[1:]}: {'; '.join(tried)}")


def closest(decoded: np.ndarray, original: np.ndarray) -> list[int]:
    """For each decoded frame, the index of the original frame it is nearest to."""
    distance = np.abs(decoded[:, None].astype(np.int16) - original[None].astype(np.int16)).mean(axis=(2, 3, 4))
    return distance.argmin(axis=1).tolist()


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """One file per container that this PyAV build can write (others are absent: their tests skip)."""
    folder = tmp_path_factory.mktemp("containers")
    paths = {}
    for name, (fps, codecs) in CONTAINERS.items():
        try:
            write_container(folder / f"clip.{name}", clip(), fps, codecs)
        except pytest.skip.Exception:
            continue
        paths[name] = folder / f"clip.{name}"
    return paths


def _path(written: dict[str, Path], name: str) -> Path:
    if name not in written:  # write again, to skip with the reason
        write_container(Path(f"/nonexistent/clip.{name}"), clip(), *CONTAINERS[name])
    return written[name]


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_every_container_decodes_at_its_own_frame_rate(written, name):
    path = _path(written, name)
    fps = CONTAINERS[name][0]
    info = probe(path)
    assert (info.width, info.height, info.num_frames) == (WIDTH, HEIGHT, FRAMES)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    frames = read_video(path)
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    original = clip()
    assert closest(frames, original) == list(range(FRAMES))  # every frame in its place, none repeated
    error = np.abs(frames.astype(np.int16) - original.astype(np.int16)).mean()
    assert error < MEAN_ERROR.get(name, DEFAULT_MEAN_ERROR), error
    assert np.array_equal(read_video(path, select=Consecutive(4, offset=3)), frames[3:7])
    # time-based selections use the container's rate: the window [2/fps, 6/fps) s holds frames 2-5
    assert np.array_equal(read_video(path, window=(2 / fps, 6 / fps)), frames[2:6])
    assert np.array_equal(read_video(path, select=Resample(fps / 2)), frames[::2])  # half the rate: every other
    with FrameScan(path) as scan:
        assert scan.info.fps == pytest.approx(fps, rel=1e-3)
        assert [index for index, _ in scan.frames()] == list(range(FRAMES))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_folder_of_frames_is_read_at_the_given_frame_rate(tmp_path, suffix):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip()):
        Image.fromarray(frame).save(folder / f"frame_{i}{suffix}", quality=95)
    assert is_video(folder) and probe(folder).fps == 8.0  # no rate of its own: 8 unless given
    info = probe(folder, fps=4)
    assert (info.fps, info.num_frames, info.duration) == (4.0, FRAMES, 3.0)
    frames = read_video(folder)
    assert closest(frames, clip()) == list(range(FRAMES))
    assert np.array_equal(read_video(folder, window=(1.0, 2.0), fps=4), frames[4:8])
    assert np.array_equal(read_video(folder, window=(1.0, 2.0)), frames[8:12])  # at 8 fps
    with pytest.raises(ValueError, match="must be positive"):
        probe(folder, fps=0)


def test_a_folder_of_mixed_containers_is_one_set(written, tmp_path):
    if len(written) < 2:
        pytest.skip("fewer than two containers can be written by this PyAV build")
    root = tmp_path / "videos"
    (root / "nested").mkdir(parents=True)
    for name, path in written.items():
        (root / ("nested" if name == "mkv" else ".") / path.name).write_bytes(path.read_bytes())
    frames = root / "as_frames"
    frames.mkdir()
    for i, frame in enumerate(clip()[:6]):
        Image.fromarray(frame).save(frames / f"{i}.png")
    (root / "notes.txt").write_text("not a video")
    (root / "thumbs").mkdir()
    (root / "thumbs" / "a.png").write_bytes((frames / "0.png").read_bytes())
    (root / "thumbs" / "index.json").write_text("{}")  # images beside other files: not a frame folder
    videos = load_video_set(root, fps=6)
    keys = [item.key for item in videos.items]
    expected = sorted(["as_frames"] + [("nested/" if n == "mkv" else "") + f"clip.{n}" for n in written])
    assert videos.kind == "folder" and keys == expected
    assert {item.key: item.fps for item in videos.items}["as_frames"] == 6.0
    assert all(item.fps is None for item in videos.items if item.key != "as_frames")
    for item in videos.items:
        info = probe(item.path, fps=item.fps)
        assert info.num_frames == (6 if item.key == "as_frames" else FRAMES)
        assert info.fps == pytest.approx(6.0 if item.key == "as_frames" else CONTAINERS[item.path.suffix[1:]][0],
                                         rel=1e-3)


def test_an_empty_folder_names_every_container(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(FileNotFoundError) as caught:
        load_video_set(tmp_path / "empty")
    assert all(suffix in str(caught.value) for suffix in (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"))
    assert "png/jpg/jpeg frames" in str(caught.value)
    assert set(VIDEO_SUFFIXES) >= {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}


def test_videos_of_other_containers_take_prompts_by_file_name(written, tmp_path):
    if "mov" not in written:
        pytest.skip("this PyAV build cannot write .mov")
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "a.mov").write_bytes(written["mov"].read_bytes())
    (folder / "b.mp4").write_bytes(written.get("mp4", written["mov"]).read_bytes())
    (tmp_path / "prompts.csv").write_text("video,prompt\na.mov,phacoemulsification\nb,capsulorhexis\n")
    videos = load_video_set(folder, prompts=tmp_path / "prompts.csv")
    assert [(item.key, item.prompt) for item in videos.items] == [("a.mov", "phacoemulsification"),
                                                                  ("b.mp4", "capsulorhexis")]
    assert ExternalVideos(folder).validate(min_frames=FRAMES, decode=False).layouts == {"mov": 1, "mp4": 1}


def test_ophora_evaluate_scores_mov_files_against_mp4_files(written, tmp_path, monkeypatch, capsys):
    """The issue's new user: one command, a folder of .mov against a folder of .mp4, no traceback."""
    if not {"mov", "mp4"} <= set(written):
        pytest.skip("this PyAV build cannot write both .mov and .mp4")
    from ophora.__main__ import main

    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    for name in ("mov", "mp4"):  # both at 8 fps: sets of different rates are refused (or resampled) by evaluate
        (tmp_path / name).mkdir()
        write_container(tmp_path / name / f"clip_0.{name}", clip(), 8, CONTAINERS[name][1])
        for i in range(1, 4):
            (tmp_path / name / f"clip_{i}.{name}").write_bytes((tmp_path / name / f"clip_0.{name}").read_bytes())
    out = tmp_path / "result.json"
    code = main(["evaluate", "--real", str(tmp_path / "mp4"), "--fake", str(tmp_path / "mov"), "--metrics", "fid",
                 "--fid-frames", "2", "--bootstrap", "0", "--workers", "0", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    fid = result["metrics"]["fid"]
    assert (fid["n_real"], fid["n_fake"]) == (4, 4) and result["failed"] == []
    # the same frames, encoded by the same H.264 encoder into two containers, decode alike: FID 0
    assert fid["value"] == pytest.approx(0.0, abs=1e-3)
