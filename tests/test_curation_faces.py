"""Faces in the embedded privacy filter (``overlay``): a real face pasted into OphSim clips is found where it
was pasted; untouched OphSim clips show none.

The face is the astronaut of ``skimage.data.astronaut()`` (Eileen Collins, public domain), cut around her
head and pasted 40-80 pixels high into 128x128 OphSim frames, written with :func:`write_video` (H.264, so the
detector sees it after compression, as in real clips).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from ophora.configs import ConfigError
from ophora.curation.config import OverlayConfig
from ophora.curation.privacy.faces import face_check_height, sample_positions
from ophora.curation.privacy.overlay import OverlayPrivacyStage, decode_size
from ophora.curation.stage import ClipItem
from ophora.data.video import probe, read_video, write_video
from ophora.sim.world import WorldConfig, build_world

WORLD = WorldConfig(videos=2, seed=13, frames=16, size=(128, 128), fps=8.0)  # 24 clean clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces_world")
    build_world(WORLD, out, workers=1, progress=False)
    return sorted((out / "ophvl_raw" / "clips").glob("*.mp4"))


@pytest.fixture(scope="module")
def stage():
    return OverlayPrivacyStage(OverlayConfig())


def head(height: int) -> np.ndarray:
    """The astronaut's head, hair to chin, ``height`` pixels high: uint8 [height, ~0.9 height, 3] RGB."""
    crop = astronaut()[50:190, 160:285]
    return cv2.resize(crop, (int(round(height * 125 / 140)), height), interpolation=cv2.INTER_AREA)


def paste_face(src, dst, height: int, top: int, left: int, first: int = 0, upscale: int = 1):
    """Copy clip ``src`` to ``dst`` with the head pasted at (top, left) from frame ``first`` on."""
    frames = read_video(src)
    if upscale > 1:
        frames = np.stack([cv2.resize(f, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
                           for f in frames])
    face = head(height)
    frames[first:, top:top + face.shape[0], left:left + face.shape[1]] = face
    write_video(dst, frames, fps=WORLD.fps)
    return (top, left, face.shape[0], face.shape[1])


def check(stage, path):
    return stage.check(ClipItem(path.stem, "", path))


def inside(box, pasted) -> float:
    """Fraction of ``box`` (top, left, height, width) that lies inside ``pasted``."""
    (r, c, h, w), (pr, pc, ph, pw) = box, pasted
    rows = max(0, min(r + h, pr + ph) - max(r, pr))
    cols = max(0, min(c + w, pc + pw) - max(c, pc))
    return rows * cols / (h * w)


@pytest.mark.slow
def test_untouched_ophsim_clips_show_no_face_and_say_faces_were_checked(clips, stage):
    verdicts = [check(stage, path) for path in clips]
    flagged = [(v.scores["face_frames"], v.scores["face_boxes"]) for v in verdicts if v.scores["faces"]]
    print(f"false-positive rate: {len(flagged)}/{len(verdicts)} clips")
    assert len(verdicts) == 24 and flagged == []
    for v in verdicts:
        assert v.keep and v.reason == "ok" and v.version.startswith("privacy/v2+")
        assert v.scores["faces_checked"] == [0, 5, 10, 15] and v.scores["faces_found"] == 0
        assert v.scores["faces_detector"].startswith("scikit-image ") and "LBP" in v.scores["faces_detector"]
        assert v.scores["faces_min_px"] == 32 and "checked 4 frames" in v.scores["faces_note"]


@pytest.mark.parametrize("height, top, left, clip", [(44, 70, 8, 0), (60, 10, 60, 5), (80, 30, 30, 11)])
def test_a_pasted_face_drops_the_clip_and_is_boxed_where_it_was_pasted(clips, stage, tmp_path, height, top,
                                                                      left, clip):
    pasted = paste_face(clips[clip], tmp_path / "face.mp4", height, top, left, first=6)
    v = check(stage, tmp_path / "face.mp4")
    s = v.scores
    assert not v.keep and v.reason.startswith("face: ") and "px" in v.reason, v.reason
    assert s["faces_checked"] == [0, 5, 10, 15]
    assert s["face_frames"] and set(s["face_frames"]) <= {10, 15}  # pasted from frame 6 on
    assert s["faces"] == len(s["face_frames"]) and s["faces_found"] == len(s["face_boxes"]) >= s["faces"]
    for frame, *box in s["face_boxes"]:
        assert frame in s["face_frames"]
        assert inside(box, pasted) >= 0.8, (box, pasted)
        assert 0.4 * height <= box[2] <= 1.1 * height and box[2] == box[3], (box, height)
    assert check(stage, clips[clip]).keep  # the same clip without the face is kept


def test_a_larger_clip_is_decoded_once_high_enough_for_faces_and_reduced_for_text(clips, stage, tmp_path):
    pasted = paste_face(clips[3], tmp_path / "big.mp4", 150, 110, 30, upscale=3)  # 384x384, off the text boxes
    info = probe(tmp_path / "big.mp4")
    assert decode_size(info, OverlayConfig()) == (288, 288)  # above analysis_height 192: the face check's size
    assert decode_size(info, OverlayConfig(faces=False)) == (192, 192)
    v = check(stage, tmp_path / "big.mp4")
    assert not v.keep and v.scores["faces"] == 4 and v.scores["faces_min_px"] == 32
    assert all(inside(box, pasted) >= 0.8 for _, *box in v.scores["face_boxes"]), (v.scores, pasted)
    text = ("subtitle_strokes", "subtitle_fraction", "watermark_strokes", "watermark_corner")
    alone = check(OverlayPrivacyStage(OverlayConfig(faces=False)), tmp_path / "big.mp4").scores
    assert [v.scores[k] for k in text] == [alone[k] for k in text]  # text checks see the same 192-px frames
    assert v.scores["subtitle_fraction"] == 0.0 and v.scores["watermark_strokes"] < 6


def test_detector_image_height_fits_the_smallest_face_to_the_24_pixel_window():
    config = OverlayConfig()
    assert face_check_height(128, config) == 96  # 32-px faces -> 24 px: reduced
    assert face_check_height(480, config) == 360
    assert face_check_height(1080, config) == 360  # capped: faces from 72 px are found
    assert face_check_height(128, dataclasses.replace(config, face_min_size=16)) == 192  # enlarged
    assert face_check_height(10, config) == 24
    assert sample_positions(24, 4).tolist() == [0, 8, 15, 23] and sample_positions(2, 4).tolist() == [0, 1]


def test_disabled_face_check_is_recorded_and_bad_settings_name_the_key(clips, tmp_path):
    paste_face(clips[0], tmp_path / "face.mp4", 60, 34, 40)  # off the watermark corners
    v = check(OverlayPrivacyStage(OverlayConfig(faces=False)), tmp_path / "face.mp4")
    assert v.keep and v.scores["faces"] is None and "disabled" in v.scores["faces_note"]
    assert not check(OverlayPrivacyStage(OverlayConfig()), tmp_path / "face.mp4").keep  # kept only as disabled
    with pytest.raises(ConfigError, match=r"privacy\.overlay\.face_scale_factor: must be above 1\.0, got 1\.0"):
        OverlayPrivacyStage(OverlayConfig(face_scale_factor=1.0))
    with pytest.raises(ConfigError, match=r"privacy\.overlay\.face_frames: must be at least 1, got 0"):
        OverlayPrivacyStage(OverlayConfig(face_frames=0))
