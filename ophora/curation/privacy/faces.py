"""Faces on a few sampled frames, with scikit-image's LBP frontal-face cascade (no model download).

The cascade (OpenCV's ``lbpcascade_frontalface``, bundled with scikit-image as
``skimage.data.lbp_frontal_face_cascade_filename()``) scans a 24x24-pixel window over an image pyramid. The
frames are rescaled so that the smallest face looked for, ``face_min_size`` pixels of the source clip, fills
that window: small clips are enlarged, large ones reduced, but never beyond ``face_max_height`` pixels high
(then the smallest face found is larger; it is recorded as ``faces_min_px``). A box counts when at least
``face_min_neighbors`` overlapping windows of the pyramid agree; on OphSim's eye close-ups (iris texture,
vessels, instruments) fewer agreeing windows give false faces (measured in ``tests/test_curation_faces.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ophora.configs import ConfigError
from ophora.curation.config import OverlayConfig

__all__ = ["WINDOW", "FaceDetector", "face_detector", "check_face_settings", "face_check_height", "sample_positions",
           "face_scores"]

WINDOW = 24  # the cascade's detection window, pixels (side)


def face_check_height(source_height: int, config: OverlayConfig) -> int:
    """Height in pixels of the image the detector scans for a clip ``source_height`` pixels high.

    A face of ``config.face_min_size`` source pixels becomes :data:`WINDOW` pixels, capped at
    ``config.face_max_height`` and never below the window itself.
    """
    wanted = int(round(source_height * WINDOW / config.face_min_size))
    return max(WINDOW, min(wanted, config.face_max_height))


def sample_positions(count: int, k: int) -> np.ndarray:
    """Positions (int [<=k], increasing, unique) of ``k`` frames spread uniformly over ``count`` decoded frames."""
    if count < 1:
        return np.zeros(0, np.int64)
    return np.unique(np.round(np.linspace(0, count - 1, max(1, min(k, count)))).astype(np.int64))


@dataclass
class FaceDetector:
    """The loaded cascade and its settings; ``name`` says which detector (and version) made a verdict."""

    cascade: object
    name: str
    config: OverlayConfig

    def boxes(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Faces in a grey uint8 [H, W] image as (top, left, height, width) boxes in its pixels."""
        c = self.config
        if min(grey.shape) < WINDOW:
            return []
        found = self.cascade.detect_multi_scale(
            grey, scale_factor=c.face_scale_factor, step_ratio=c.face_step_ratio, min_size=(WINDOW, WINDOW),
            max_size=grey.shape[:2], min_neighbor_number=c.face_min_neighbors)
        return [(int(b["r"]), int(b["c"]), int(b["height"]), int(b["width"])) for b in found]


def face_detector(config: OverlayConfig) -> tuple[FaceDetector | None, str]:
    """(detector, "") or (None, why faces cannot be checked): disabled, or scikit-image missing."""
    if not config.faces:
        return None, "face check disabled (privacy.overlay.faces: false)"
    check_face_settings(config)
    try:
        import skimage
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade
    except ImportError:
        return None, "faces not checked: scikit-image is not installed (pip install 'scikit-image>=0.22')"
    cascade = Cascade(lbp_frontal_face_cascade_filename())
    return FaceDetector(cascade, f"scikit-image {skimage.__version__} LBP frontal-face cascade", config), ""


def check_face_settings(config: OverlayConfig) -> None:
    """Raise :class:`ConfigError` naming the first unusable ``privacy.overlay.face_*`` setting."""
    rules = {"face_frames": (config.face_frames >= 1, "at least 1"),
             "face_min_size": (config.face_min_size >= 1, "at least 1 (pixels)"),
             "face_max_height": (config.face_max_height >= WINDOW, f"at least {WINDOW} (pixels)"),
             "face_scale_factor": (config.face_scale_factor > 1.0, "above 1.0"),
             "face_step_ratio": (config.face_step_ratio >= 1.0, "at least 1.0"),
             "face_min_neighbors": (config.face_min_neighbors >= 1, "at least 1")}
    for key, (ok, expected) in rules.items():
        if not ok:
            raise ConfigError(f"privacy.overlay.{key}", f"must be {expected}, got {getattr(config, key)!r}")


def _detector_grey(frame: np.ndarray, height: int) -> np.ndarray:
    """RGB uint8 [h, w, 3] -> grey uint8 [height, w * height / h], area filter down, bilinear up."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if grey.shape[0] == height:
        return grey
    width = max(1, int(round(grey.shape[1] * height / grey.shape[0])))
    method = cv2.INTER_AREA if height < grey.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(grey, (width, height), interpolation=method)


def face_scores(detector: FaceDetector, frames: np.ndarray, frame_indices: np.ndarray,
                source_size: tuple[int, int]) -> dict:
    """Look for faces on ``frames`` (uint8 [k, h, w, 3] RGB, any size) of a clip of ``source_size`` (H, W).

    ``frame_indices``: the frames' indices in the clip. Returns plain JSON scores: ``faces`` (frames with a
    face), ``faces_found`` (boxes over all frames), ``face_frames`` (clip frame indices with a face),
    ``face_boxes`` ([frame index, top, left, height, width] in source pixels), ``faces_checked`` (clip frame
    indices looked at), ``faces_min_px`` (smallest face side findable, source pixels), ``faces_detector``.
    """
    source_h = source_size[0]
    height = face_check_height(source_h, detector.config)
    to_source = source_h / height
    face_frames, boxes = [], []
    for index, frame in zip(frame_indices, frames):
        found = detector.boxes(_detector_grey(frame, height))
        if found:
            face_frames.append(int(index))
        boxes += [[int(index)] + [int(round(v * to_source)) for v in box] for box in found]
    return {"faces": len(face_frames), "faces_found": len(boxes), "face_frames": face_frames,
            "face_boxes": boxes, "faces_checked": [int(i) for i in frame_indices],
            "faces_min_px": int(round(WINDOW * to_source)), "faces_detector": detector.name}
