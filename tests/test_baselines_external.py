"""Videos from official Endora/Bora code: frame folders read as videos, a folder of mp4s or of frame folders
with a prompt mapping, validated up front, scored by the harness as they are, and malformed inputs refused
with errors naming the file and the problem."""
from __future__ import annotations

import math
import re
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from baselines.external import main as check_main
from benchmarks.detectors.clip import TINY_MODEL
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.evaluate import main as evaluate_main
from ophora.data import frame_folders
from ophora.data.external import ExternalVideos, ExternalVideosError, parse_spec
from ophora.data.manifests import ManifestError
from ophora.data.sets import external_set, load_video_set
from ophora.data.video import Consecutive, Uniform, VideoDecodeError, iter_frames, probe, read_video, write_video

from eval_sets import PROMPTS, clip_frames, make_folder

pytestmark = pytest.mark.usefixtures("torch_one_thread")

N, FRAMES, SIZE = 3, 16, (32, 32)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def write_frames(folder, frames, pattern="frame_{}.png", **options):
    """One image per frame of ``frames`` (uint8 [T, H, W, 3]) under ``folder``; unpadded numbers by default, so
    only a natural sort gives the right order."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / pattern.format(t), **options)
    return folder


def smooth_clip(frames, size, seed):
    """uint8 [T, H, W, 3]: a seeded smooth colour field (bilinear over a 16-pixel grid) drifting one pixel per
    frame; smooth, so H.264 at crf 18 with 4:2:0 chroma keeps it within a few levels."""
    h, w = size
    coarse = np.random.default_rng(seed).uniform(30, 225, (h // 16 + 2, (w + frames) // 16 + 2, 3))
    field = cv2.resize(coarse.astype(np.float32), (coarse.shape[1] * 16, coarse.shape[0] * 16),
                       interpolation=cv2.INTER_LINEAR)
    return np.stack([field[:h, t:t + w] for t in range(frames)]).round().astype(np.uint8)


def official_like(root, n=N, frames=FRAMES, size=SIZE):
    """Bora-like ``root/mp4s/sample_i.mp4`` and Endora-like ``root/frames/video_i/frame_t.png`` of the same
    frames; returns the frames written (list of uint8 [T, H, W, 3])."""
    clips = [smooth_clip(frames, size, seed=100 + i) for i in range(n)]
    for i, clip in enumerate(clips):
        write_video(root / "mp4s" / f"sample_{i}.mp4", clip, fps=8)
        write_frames(root / "frames" / f"video_{i}", clip)
    return clips


def mapping(path, rows, header="video,prompt"):
    path.write_text("\n".join([header, *(f"{video},{prompt}" for video, prompt in rows)]) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def videos(tmp_path):
    clips = official_like(tmp_path)
    prompts = mapping(tmp_path / "bora_prompts.csv", [(f"sample_{i}.mp4", PROMPTS[i]) for i in range(N)])
    return tmp_path, clips, prompts


# ---------------------------------------------------------------------------------------------------------
# reading


def test_frame_folder_reads_as_a_video_through_ophora_data_video(tmp_path):
    clip = clip_frames(12, (24, 40), seed=5)
    folder = write_frames(tmp_path / "v", clip)
    info = probe(folder)
    assert (info.num_frames, info.height, info.width, info.codec) == (12, 24, 40, "png")
    assert np.array_equal(read_video(folder), clip)  # natural order: frame_2 before frame_10
    assert np.array_equal(np.stack(list(iter_frames(folder))), clip)
    assert np.array_equal(read_video(folder, Uniform(4)), clip[[0, 4, 7, 11]])
    assert np.array_equal(read_video(folder, Consecutive(3, offset=9)), clip[9:12])
    fps = frame_folders.DEFAULT_FPS
    assert np.array_equal(read_video(folder, window=(4 / fps, 8 / fps)), clip[4:8])
    small = read_video(folder, Uniform(2), size=(12, 20))
    assert small.shape == (2, 12, 20, 3) and small.dtype == np.uint8
    assert abs(float(small.mean()) - float(clip[[0, 11]].mean())) < 2.0  # an area resize keeps the mean
    with pytest.raises(ValueError, match="needs 14 frames"):
        read_video(folder, Consecutive(5, offset=9))
    smooth = smooth_clip(4, (32, 32), seed=2)
    jpegs = write_frames(tmp_path / "jpg", smooth, pattern="{}.jpg", quality=95)
    assert probe(jpegs).codec == "jpeg"
    assert np.abs(read_video(jpegs).astype(np.int16) - smooth).mean() < 3.0  # JPEG's loss


def test_frame_folder_errors_name_the_image(tmp_path):
    clip = clip_frames(4, (16, 16), seed=1)
    folder = write_frames(tmp_path / "v", clip)
    (folder / "frame_4.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match=r"frame_4\.png.*not a readable image"):
        read_video(folder)
    (folder / "frame_4.png").unlink()
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(folder / "frame_4.png")  # 16-bit grey
    with pytest.raises(VideoDecodeError, match=r"frame_4\.png.*not 8-bit"):
        probe(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="frame folder holds no frame images"):
        frame_folders.probe(tmp_path / "empty")
    with pytest.raises(VideoDecodeError, match="not a regular file"):  # no image: neither a video nor frames
        probe(tmp_path / "empty")


def test_mp4s_and_frame_folders_read_back_what_was_written(videos):
    root, clips, prompts = videos
    mp4s = ExternalVideos(root / "mp4s", prompts, generator="bora-official")
    frames = ExternalVideos(root / "frames", generator="endora-official")
    assert [v.name for v in mp4s.videos] == [f"sample_{i}" for i in range(N)]
    assert [v.prompt for v in mp4s.videos] == list(PROMPTS[:N]) and mp4s.conditional
    assert [v.layout for v in frames.videos] == ["frames"] * N and not frames.conditional
    for clip, mp4, folder in zip(clips, mp4s.videos, frames.videos):
        assert np.array_equal(read_video(folder.path), clip)  # PNG: exact
        decoded = read_video(mp4.path).astype(np.int16)
        assert decoded.shape == clip.shape
        assert np.abs(decoded - clip).mean() < 4.0  # H.264 crf 18 on a smooth texture
    report = frames.validate(min_frames=16)
    assert (report.videos, report.size, report.frames, report.prompts) == (N, SIZE, (16, 16), 0)
    assert report.layouts == {"frames": N}
    assert mp4s.validate(min_frames=16, decode=False).layouts == {"mp4": N}


def test_harness_reads_external_sets_without_copies(videos):
    root, _, prompts = videos
    spec = f"external:{root / 'mp4s'}?prompts={prompts}"
    as_spec = load_video_set(spec)
    assert as_spec.kind == "external" and as_spec.has_prompts and as_spec.manifest == prompts
    assert [item.path for item in as_spec.items] == [root / "mp4s" / f"sample_{i}.mp4" for i in range(N)]
    assert load_video_set(root / "mp4s", prompts=prompts).items == as_spec.items
    assert external_set(parse_spec(as_spec.spec)).items == as_spec.items
    detected = load_video_set(root / "frames")  # a folder of frame folders needs no prefix
    assert detected.kind == "external" and not detected.has_prompts
    assert [item.key for item in detected.items] == [f"video_{i}" for i in range(N)]
    assert not list(root.rglob("*.tmp*"))  # nothing converted or copied


def _fd_config(real, fake):
    """FID and FVD, cheap; the real set's statistics are cached (per test) after the first run."""
    return EvalConfig(str(real), str(fake), metrics=("fid", "fvd"), tiny_i3d=True, fid_frames=2, bootstrap=0,
                      workers=0, progress=False)


@pytest.mark.slow
def test_evaluate_scores_both_layouts_and_png_copies_score_identically(videos):
    root, clips, _ = videos
    make_folder(root / "real", 4, 16, size=SIZE, seed=0)
    twin = root / "frames_twin"  # the same frames, other names (zero-padded JPEG-free PNGs) in another folder
    for i, clip in enumerate(clips):
        write_frames(twin / f"clip{i:03d}", clip, pattern="{:04d}.png")
    results = {name: evaluate(_fd_config(root / "real", f"external:{root / name}" if name == "mp4s" else root / name))
               for name in ("mp4s", "frames", "frames_twin")}
    for name, result in results.items():
        assert result["inputs"]["fake"]["kind"] == "external" and not result["failed"], name
        for metric in ("fid", "fvd"):
            value = result["metrics"][metric]["value"]
            assert math.isfinite(value) and value > 0, (name, metric)
            assert result["metrics"][metric]["n_fake"] == N
    for metric in ("fid", "fvd"):
        assert results["frames_twin"]["metrics"][metric]["value"] == results["frames"]["metrics"][metric]["value"]
        # the mp4 copy differs by the codec's error only: same order of magnitude, not the same number
        assert results["mp4s"]["metrics"][metric]["value"] != results["frames"]["metrics"][metric]["value"]


def test_clipscore_takes_the_mapping_and_is_refused_without_one(videos, capsys):
    root, _, prompts = videos
    out = root / "clip.json"
    assert evaluate_main(["--real", str(root / "mp4s"), "--fake", str(root / "mp4s"), "--fake-prompts",
                          str(prompts), "--metrics", "clipscore", "--clip-model", TINY_MODEL, "--clip-frames", "2",
                          "--bootstrap", "0", "--workers", "0", "--no-cache", "--quiet", "--out", str(out)]) == 0
    assert "clipscore" in capsys.readouterr().out
    import json

    per_video = json.loads(out.read_text())["per_video"]["clipscore"]
    assert {v["path"]: v["prompt"] for v in per_video} == {f"sample_{i}.mp4": PROMPTS[i] for i in range(N)}
    assert all(math.isfinite(v["score"]) for v in per_video)
    cfg = EvalConfig(str(root / "mp4s"), f"external:{root / 'frames'}", metrics=("clipscore",),
                     clip_model=TINY_MODEL, workers=0, progress=False, no_cache=True)
    with pytest.raises(ValueError, match=r"clipscore needs a prompt.*--fake-prompts.*unconditional"):
        evaluate(cfg)


def test_check_cli_prints_a_summary_and_fails_on_bad_input(videos, capsys):
    root, _, prompts = videos
    assert check_main(["check", str(root / "mp4s"), "--prompts", str(prompts), "--min-frames", "16"]) == 0
    out = capsys.readouterr().out
    assert f"{root / 'mp4s'}" in out and "3 videos (3 mp4 files), 32x32 (HxW), 16-16 frames, 3 prompts" in out
    assert check_main(["check", str(root / "frames"), "--min-frames", "17"]) == 1
    err = capsys.readouterr().err
    assert err.count("16 frames, expected at least 17") == N and str(root / "frames" / "video_0") in err


# ---------------------------------------------------------------------------------------------------------
# malformed inputs: every message names the file and the problem


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.txt").write_text("sampling done\n")
    with pytest.raises(ExternalVideosError, match=re.escape(f"{tmp_path / 'empty'}: no videos found")):
        ExternalVideos(tmp_path / "empty")


def test_unreadable_video(videos):
    root, _, _ = videos
    (root / "mp4s" / "sample_3.mp4").write_bytes(b"\x00garbage" * 100)
    truncated = (root / "mp4s" / "sample_0.mp4").read_bytes()
    (root / "mp4s" / "sample_4.mp4").write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(ExternalVideosError) as caught:
        ExternalVideos(root / "mp4s").validate()
    message = str(caught.value)
    assert f"{root / 'mp4s' / 'sample_3.mp4'}: not a readable video container" in message
    assert f"{root / 'mp4s' / 'sample_4.mp4'}" in message and "2 problem(s)" in message


def test_frame_folder_with_a_non_image_file(videos):
    root, _, _ = videos
    (root / "frames" / "video_1" / "notes.txt").write_text("seed 3\n")
    (root / "frames" / "video_9").mkdir()
    with pytest.raises(ExternalVideosError) as caught:
        ExternalVideos(root / "frames").validate()
    message = str(caught.value)  # every problem is listed, not only the first
    assert "2 problem(s)" in message and "video_1/notes.txt: not a frame image" in message
    assert "video_9: frame folder holds no frame images" in message


def test_frame_folder_with_mixed_sizes(videos):
    root, _, _ = videos
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(root / "frames" / "video_2" / "frame_16.png")
    with pytest.raises(ExternalVideosError, match=r"video_2/frame_16\.png: frame is 16x32 \(HxW\), earlier frames "
                                                  r"of .*video_2 are 32x32"):
        ExternalVideos(root / "frames").validate()


def test_videos_of_different_sizes(videos):
    root, _, _ = videos
    write_video(root / "mp4s" / "sample_3.mp4", clip_frames(16, (16, 32), seed=9), fps=8)
    with pytest.raises(ExternalVideosError, match=r"sample_3\.mp4: 16x32 \(HxW\), expected 32x32 like 3 other"):
        ExternalVideos(root / "mp4s").validate()


def test_too_few_frames(videos):
    root, _, _ = videos
    write_video(root / "mp4s" / "sample_3.mp4", clip_frames(8, SIZE, seed=9), fps=8)
    with pytest.raises(ExternalVideosError, match=r"sample_3\.mp4: 8 frames, expected at least 16"):
        ExternalVideos(root / "mp4s").validate(min_frames=16)
    assert ExternalVideos(root / "mp4s").validate(min_frames=8).frames == (8, 16)


def test_loose_images_and_other_video_formats(tmp_path):
    official_like(tmp_path, n=1)
    shutil.copy(tmp_path / "frames" / "video_0" / "frame_0.png", tmp_path / "frames" / "frame_0.png")
    (tmp_path / "frames" / "clip.avi").write_bytes(b"x")
    with pytest.raises(ExternalVideosError) as caught:
        ExternalVideos(tmp_path / "frames")
    assert "frames/frame_0.png: a frame image directly in" in str(caught.value)
    assert "clip.avi" not in str(caught.value)  # any container is a video (it is read when scored)
    write_video(tmp_path / "frames" / "video_0.mp4", clip_frames(16, SIZE, seed=2), fps=8)
    with pytest.raises(ExternalVideosError, match=r"2 videos are named 'video_0' \(video_0/, video_0\.mp4\)"):
        ExternalVideos(tmp_path / "frames")


def test_mapping_names_a_missing_video(videos):
    root, _, _ = videos
    rows = [(f"sample_{i}", PROMPTS[i]) for i in range(N)] + [("ghost.mp4", "x")]
    csv = mapping(root / "m.csv", rows)
    with pytest.raises(ManifestError, match=r"m\.csv, row 4 \(line 5\), column 'video': names 'ghost\.mp4', but "
                                            r".*mp4s has no ghost\.mp4"):
        ExternalVideos(root / "mp4s", csv)


def test_video_missing_from_the_mapping(videos):
    root, _, _ = videos
    csv = mapping(root / "m.csv", [("sample_0", "a"), ("sample_1", "b")])
    with pytest.raises(ManifestError, match=r"m\.csv: no prompt for 1 of 3 videos of .*mp4s: 'sample_2'"):
        ExternalVideos(root / "mp4s", csv)
    with pytest.raises(ManifestError, match=r"m\.csv: no prompt for 1 of 3"):  # the harness checks it too
        load_video_set(f"external:{root / 'mp4s'}?prompts={csv}")


def test_duplicate_rows(videos):
    root, _, _ = videos
    csv = mapping(root / "m.csv", [("sample_0", "a"), ("sample_1", "b"), ("sample_2", "c"), ("sample_0.mp4", "d")])
    with pytest.raises(ManifestError, match=r"m\.csv, row 4 \(line 5\), column 'video': duplicate video 'sample_0'; "
                                            r"already mapped by row 1 \(line 2\)"):
        ExternalVideos(root / "mp4s", csv)


def test_non_utf8_mapping(videos):
    root, _, _ = videos
    csv = root / "m.csv"
    csv.write_bytes("video,prompt\nsample_0,cataracte trait\u00e9e\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m\.csv, line 2: expected UTF-8 text, found undecodable bytes"):
        ExternalVideos(root / "mp4s", csv)


def test_mapping_without_its_columns_and_bad_spec_options(videos):
    root, _, _ = videos
    csv = mapping(root / "m.csv", [("sample_0", "a")], header="path,text")
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['video', 'prompt'\]; found columns "
                                            r"\['path', 'text'\]"):
        ExternalVideos(root / "mp4s", csv)
    with pytest.raises(ValueError, match=r"mp4s\?prompt=x\.csv': unknown option 'prompt'; did you mean 'prompts'"):
        parse_spec(f"external:{root / 'mp4s'}?prompt=x.csv")
