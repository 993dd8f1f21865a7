"""How prepare turns a clip into a bucket's frames: the released strided rule and the earlier fps window, and how
many clips of a 160K-like length distribution each preset keeps (issue 17)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ophora.configs import load_preset
from ophora.data.video import write_video
from ophora.training.prepare import clip_bucket, load_clip, nearest_bucket, strided_indices

RELEASED_BUCKETS = [(49, 480, 720), (49, 480, 960), (49, 720, 720), (49, 720, 960)]


@pytest.mark.parametrize("num_frames", [49, 50, 97, 98, 166, 333, 1000])
def test_strided_indices_are_the_released_range_with_stride_n_over_49(num_frames):
    expected = list(range(0, num_frames, num_frames // 49))[:49]  # uni-medical/Ophora dataset.py
    assert strided_indices(num_frames, 49).tolist() == expected


def test_strided_selection_refuses_clips_shorter_than_the_bucket():
    with pytest.raises(ValueError, match="at least 49"):
        strided_indices(48, 49)


def test_nearest_bucket_is_the_released_l1_rule():
    assert nearest_bucket(RELEASED_BUCKETS, 166, 1080, 1920) == (49, 720, 960)  # 360 + 960 beats 600 + 1200
    assert nearest_bucket(RELEASED_BUCKETS, 166, 480, 720) == (49, 480, 720)
    assert nearest_bucket(RELEASED_BUCKETS, 166, 720, 1280) == (49, 720, 960)
    assert nearest_bucket(RELEASED_BUCKETS, 166, 700, 700) == (49, 720, 720)
    assert nearest_bucket(RELEASED_BUCKETS, 30, 480, 720) is None
    # several frame counts: the one nearest to min(N, largest)
    assert nearest_bucket([(9, 32, 32), (17, 32, 32)], 12, 32, 32) == (9, 32, 32)
    assert nearest_bucket([(9, 32, 32), (17, 32, 32)], 40, 32, 32) == (17, 32, 32)
    assert nearest_bucket([(9, 32, 32), (17, 32, 32)], 14, 32, 32) is None  # nearest is 17 > 14 source frames


def test_paper_preset_uses_the_released_selection_buckets_and_uniform_timesteps():
    preset = load_preset("paper")
    assert preset.data.selection == "strided"
    assert sorted(preset.data.all_buckets()) == RELEASED_BUCKETS
    assert preset.train.tpt.timestep_sampling == preset.train.p2ft.timestep_sampling == "uniform"
    fps_window = load_preset("paper", {"data.selection": "fps_window", "train.tpt.timestep_sampling": "stratified"})
    assert fps_window.data.selection == "fps_window" and fps_window.train.tpt.timestep_sampling == "stratified"


def test_strided_clip_spans_the_whole_clip_and_is_resized_without_cropping(tmp_path):
    # 20 frames of 32x64 whose brightness encodes the frame index and whose left half is dark
    frames = np.zeros((20, 32, 64, 3), np.uint8)
    for i in range(20):
        frames[i, :, 32:] = 10 * i + 20
    path = write_video(tmp_path / "c.mp4", frames, fps=8.0, crf=0)
    video = load_clip(path, (9, 32, 32), 8.0, "strided")  # stride 20 // 9 = 2: frames 0, 2, ..., 16
    assert video.shape == (3, 9, 32, 32)
    right = (video[:, :, :, 20:] + 1) * 127.5
    assert torch.allclose(right.mean(dim=(0, 2, 3)), torch.tensor([10.0 * i + 20 for i in range(0, 18, 2)]), atol=3)
    assert (video[:, :, :, :12] + 1).abs().max() < 0.1  # the dark half is squeezed, not cropped away
    cropped = load_clip(path, (9, 32, 32), 8.0, "fps_window")  # first 9 frames, centre crop of the middle
    assert ((cropped[:, :, :, 0] + 1) * 127.5).mean(dim=(0, 2)).tolist() == pytest.approx([0.0] * 9, abs=3)


def kept_clips(preset, lengths_s: np.ndarray, fps: float, height: int = 1080, width: int = 1920) -> int:
    """How many clips of these durations (seconds, at ``fps``) ``preset`` keeps."""
    return sum(clip_bucket(preset.data, int(round(s * fps)), fps, height, width)[0] is not None for s in lengths_s)


@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
def test_paper_preset_keeps_a_160k_like_length_distribution(fps):
    """Ophora-160K: mean clip 5.54 s, none too short for the released loader (49 source frames). Lengths 2 s +
    Gamma(2, 1.77 s) (mean 5.54 s), 10,000 clips of 1080p: the strided rule keeps every one; the earlier fps
    window (49 frames at 8 fps = 6.125 s) about a third (3,295 / 3,324 / 3,309 at 25 / 30 / 60 fps). A plain
    Gamma(4) of the same mean puts 3% of clips under 49 source frames at 30 fps: those are skipped either way."""
    lengths = 2.0 + np.random.default_rng(0).gamma(2.0, 3.54 / 2.0, 10_000)
    assert abs(lengths.mean() - 5.54) < 0.1
    kept = kept_clips(load_preset("paper"), lengths, fps)
    kept_window = kept_clips(load_preset("paper", {"data.selection": "fps_window"}), lengths, fps)
    assert kept == len(lengths)
    assert 0.3 < kept_window / len(lengths) < 0.36


def test_ophsim_demo_clips_counts():
    """OphSim demo clips: 24 frames at 8 fps (3 s). The tiny preset (17 frames in the demo) keeps them all under
    either rule (and reads the same frames: stride 24 // 17 = 1); the paper preset's 49 frames keep none."""
    lengths = np.full(36, 3.0)
    tiny = load_preset("tiny", {"data.frames": 17, "model.transformer.sample_frames": 17})
    for selection in ("fps_window", "strided"):
        assert kept_clips(load_preset("tiny", {"data.frames": 17, "model.transformer.sample_frames": 17,
                                               "data.selection": selection}), lengths, 8.0, 64, 64) == 36
        assert kept_clips(load_preset("paper", {"data.selection": selection}), lengths, 8.0, 64, 64) == 0
    assert tiny.data.selection == "strided"
    assert strided_indices(24, 17).tolist() == list(range(17))


def test_clip_bucket_says_why_a_clip_is_skipped():
    strided, window = load_preset("tiny"), load_preset("tiny", {"data.selection": "fps_window"})
    assert clip_bucket(strided.data, 9, 30.0, 64, 64) == ((9, 32, 32), None)  # 0.3 s: enough source frames
    bucket, reason = clip_bucket(strided.data, 8, 30.0, 64, 64)
    assert bucket is None and "8 source frames" in reason and "at least 9" in reason
    bucket, reason = clip_bucket(window.data, 30, 30.0, 64, 64)  # 1 s at 30 fps = 8 frames at 8 fps
    assert bucket is None and "8 frames at 8 fps" in reason
