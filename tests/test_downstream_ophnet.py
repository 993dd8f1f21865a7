"""OphNet clip datasets: the real OphNet2024 splits and classes, clip sampling, trimming, unreadable clips."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from downstream.ophnet import (
    ClipDataset,
    ClipSampling,
    ClipSource,
    StridedWindow,
    crop_offsets,
    describe_problems,
    load_clips,
    num_classes_of,
    scan_clips,
    spatial_crops,
)
from ophora.data.manifests import bundled_ophnet_csv, split_counts

pytestmark = pytest.mark.usefixtures("torch_one_thread")

OPERATION_CSV = bundled_ophnet_csv("OphNet2024_loca_challenge.csv")  # shipped with the package
PHASE_CSV = bundled_ophnet_csv("OphNet2024_loca_challenge_phase.csv")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from ophora.sim.world import WorldConfig, build_world

    out = tmp_path_factory.mktemp("ophsim")
    build_world(WorldConfig(videos=5, seed=3, frames=8, size=(64, 64)), out, progress=False)
    return out / "ophnet"


# ---------------------------------------------------------------------------------------------------------
# The real annotation files


@pytest.mark.parametrize("csv, task, clips, classes", [
    (OPERATION_CSV, "operation", (10_505, 3_522, 3_481), 107),
    (OPERATION_CSV, "phase", (10_505, 3_522, 3_481), 52),
    (PHASE_CSV, "phase", (8_773, 2_964, 2_937), 52),
])
def test_real_ophnet_splits_and_classes(csv, task, clips, classes):
    df = load_clips(ClipSource(csv, task, videos_root=Path("/data/OphNet2024/videos")))
    counts = split_counts(df)
    assert tuple(counts["clips"]) == clips
    assert tuple(counts["videos"]) == (445, 144, 154)
    assert df["label"].nunique() == classes and num_classes_of(df) == classes
    # no segment_path in the challenge CSVs: clips are cut on the fly from <videos_root>/<video_id>.mp4
    first = df.iloc[0]
    assert first["clip_path"] == "/data/OphNet2024/videos/case_0002.mp4"
    assert (first["window_start"], first["window_end"]) == (0.0, 10.0)


def test_operation_task_on_the_phase_csv_names_the_missing_column():
    with pytest.raises(ValueError, match="operation_id"):
        load_clips(ClipSource(PHASE_CSV, "operation"))
    with pytest.raises(KeyError, match="Did you mean 'phase'"):
        load_clips(ClipSource(PHASE_CSV, "phse"))


def test_segments_needs_segment_path():
    with pytest.raises(ValueError, match="segment_path"):
        load_clips(ClipSource(PHASE_CSV, "phase", trim="segments"))


# ---------------------------------------------------------------------------------------------------------
# Sampling


def test_strided_window_positions_and_short_clip_rule():
    window = StridedWindow(frames=4, stride=2, position=0.0)
    assert window.indices(20, 8.0).tolist() == [0, 2, 4, 6]
    assert StridedWindow(4, 2, 1.0).indices(20, 8.0).tolist() == [13, 15, 17, 19]
    assert StridedWindow(4, 2, 0.5).indices(20, 8.0).tolist() == [6, 8, 10, 12]
    # shorter than the span (7 frames): start at 0, clamp past the end, so the last frame repeats
    assert StridedWindow(4, 2, 0.7).indices(5, 8.0).tolist() == [0, 2, 4, 4]
    assert StridedWindow(4, 3, 0.0).indices(1, 8.0).tolist() == [0, 0, 0, 0]


def test_views_are_evenly_spaced_and_training_positions_seeded():
    sampling = ClipSampling(frames=8, stride=2, crop=32, short_side=32, views=5)
    assert sampling.positions(False, 0, 0, 3) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert sampling.positions(True, 0, 1, 3) == sampling.positions(True, 0, 1, 3)
    assert sampling.positions(True, 0, 1, 3) != sampling.positions(True, 0, 2, 3)
    assert ClipSampling(8, 2, 32, 32).positions(False, 0, 0, 0) == [0.5]
    with pytest.raises(ValueError, match="short_side"):
        ClipSampling(8, 2, 64, 32)


def test_trimmed_and_untrimmed_give_the_same_clips(world):
    csv = world / "OphSim_loca_phase.csv"
    segments = load_clips(ClipSource(csv, "phase", segments_root=world / "segments"))
    untrimmed = load_clips(ClipSource(csv, "phase", segments_root=world / "segments", trim="untrimmed"))
    assert segments["clip_path"].str.contains("/segments/").all()
    assert untrimmed["clip_path"].str.endswith(".mp4").all() and untrimmed["window_start"].notna().all()
    sampling = ClipSampling(frames=4, stride=2, crop=32, short_side=32, views=2)
    for df_a, df_b in [(segments, untrimmed)]:
        a = ClipDataset(scan_clips(df_a)[0], sampling, train=False)[(5, 0)]
        b = ClipDataset(scan_clips(df_b)[0], sampling, train=False)[(5, 0)]
        assert a["error"] == b["error"] == "" and a["label"] == b["label"] == segments["label"].iat[5]
        assert a["video"].shape == (2, 3, 4, 32, 32)
        # the same frames (H.264 of the trimmed segment vs the whole surgery: small re-encoding differences)
        assert (a["video"] - b["video"]).abs().mean() < 0.1


def test_items_are_deterministic_and_augmented(world):
    df, _ = scan_clips(load_clips(ClipSource(world / "OphSim_loca_operation.csv", "operation",
                                             segments_root=world / "segments")))
    sampling = ClipSampling(frames=8, stride=2, crop=24, short_side=32, randaugment="rand-m7-n2")
    train = ClipDataset(df, sampling, train=True, seed=1)
    first, again = train[(2, 0)], train[(2, 0)]
    assert first["video"].shape == (3, 8, 24, 24) and first["video"].dtype == torch.float32
    assert torch.equal(first["video"], again["video"])
    assert not torch.equal(first["video"], train[(2, 1)]["video"])  # another epoch, another crop/flip/position
    # operation segments are short (a few frames): 8 frames at stride 2 need 15, so the last frame repeats
    assert int(df["height"].iat[0]) == 64


# ---------------------------------------------------------------------------------------------------------
# Unreadable clips


def test_missing_and_corrupt_clips_are_listed_with_reasons(world, tmp_path):
    segments = tmp_path / "segments"
    shutil.copytree(world / "segments", segments)
    df = load_clips(ClipSource(world / "OphSim_loca_phase.csv", "phase", segments_root=segments))
    paths = [Path(p) for p in df["clip_path"]]
    paths[0].unlink()
    paths[1].write_bytes(b"this is not a video" * 100)
    paths[2].write_bytes(b"")
    readable, problems = scan_clips(df)
    assert len(readable) == len(df) - 3 and len(problems) == 3
    reasons = dict(zip(problems["clip_path"], problems["reason"]))
    assert "does not exist" in reasons[str(paths[0])]
    assert "not a readable video" in reasons[str(paths[1])]
    assert "empty" in reasons[str(paths[2])]
    assert problems["row"].tolist() == [0, 1, 2]
    assert "3 unreadable clip(s)" in describe_problems(problems)


def test_a_clip_that_breaks_after_the_scan_comes_back_with_its_error(world, tmp_path):
    segments = tmp_path / "segments"
    shutil.copytree(world / "segments", segments)
    df, _ = scan_clips(load_clips(ClipSource(world / "OphSim_loca_phase.csv", "phase", segments_root=segments)))
    Path(df["clip_path"].iat[4]).write_bytes(b"")
    sampling = ClipSampling(frames=4, stride=1, crop=32, short_side=32, views=3)
    item = ClipDataset(df, sampling, train=False)[(4, 0)]
    assert "empty" in item["error"] and item["video"].shape == (3, 3, 4, 32, 32)
    assert float(item["video"].abs().sum()) == 0.0


def test_crop_offsets_follow_pyslowfast_uniform_crop():
    assert crop_offsets(341, 256, 3) == [0, 43, 85]  # first, centre rounded up, last
    assert crop_offsets(341, 256, 1) == [43]
    assert crop_offsets(256, 256, 3) == [0, 0, 0]
    video = torch.arange(2 * 40 * 60).reshape(2, 1, 40, 60)  # [T, C, H, W], wider than high
    crops = spatial_crops(video, 40, 3)
    assert [tuple(c.shape) for c in crops] == [(2, 1, 40, 40)] * 3
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 10, 20]  # left, centre, right columns
    tall = spatial_crops(video.transpose(-1, -2), 40, 3)  # higher than wide: crops go down the frame
    assert [tuple(c.shape) for c in tall] == [(2, 1, 40, 40)] * 3
    assert all(torch.equal(t, c.transpose(-1, -2)) for t, c in zip(tall, crops))


def test_test_views_are_temporal_views_times_spatial_crops(world):
    """With 3 crops the frames are resized to a shorter side of ``test_crop`` and cropped left, centre and
    right; each temporal view comes with its crops, and the error path keeps the shape."""
    df = load_clips(ClipSource(world / "OphSim_loca_phase.csv", "phase", segments_root=world / "segments"))
    wide = ClipSampling(frames=4, stride=1, crop=32, short_side=48, views=2, spatial_crops=3, test_crop=48)
    item = ClipDataset(df, wide, train=False)[(0, 0)]
    assert not item["error"] and item["video"].shape == (6, 3, 4, 48, 48)
    one = ClipSampling(frames=4, stride=1, crop=32, short_side=48, views=2)
    centre = ClipDataset(df, one, train=False)[(0, 0)]["video"]
    assert centre.shape == (2, 3, 4, 32, 32)
    # 64x64 source frames: the shorter side is 48 for both, so the middle of the 3 crops (offset 0 on a square
    # frame) and a centre crop of 48 agree, and the 32-px centre crop sits inside it.
    assert torch.equal(item["video"][1, :, :, 8:40, 8:40], centre[0])
    with pytest.raises(ValueError, match="test_crop"):
        ClipSampling(frames=4, stride=1, crop=32, short_side=48, test_crop=64)


def test_window_past_the_end_is_a_problem(world):
    df = load_clips(ClipSource(world / "OphSim_loca_phase.csv", "phase", trim="untrimmed"))
    df.loc[df.index[0], ["window_start", "window_end"]] = [500.0, 510.0]
    readable, problems = scan_clips(df)
    assert len(problems) == 1 and "after the video's end" in problems["reason"].iat[0]
    assert isinstance(readable, pd.DataFrame) and np.isin(problems["row"], readable.index).sum() == 0
