"""The embedded privacy backend: burned-in subtitles, watermarks and faces, without a model.

Text is found by what it looks like to a scanline: a row of a text line is crossed by many short, strong
strokes (one or two per letter), which a surgical scene - smooth tissue, curved rims, a few instruments -
does not produce in the places where overlays sit.

- Subtitles: white letters with a dark outline in the bottom band. Per frame, the rows of the band are
  scanned for edges of at least ``subtitle_contrast`` grey levels (difference of the pixels one step left and
  right); the two busiest rows give the frame's stroke count. Subtitles change every second or two but are
  always there, so the clip is flagged when at least ``subtitle_min_fraction`` of the frames reach
  ``subtitle_min_strokes``.
- Watermarks: semi-transparent bright text, static in a corner. Bright thin structure is the white top-hat
  (frame minus its morphological opening); structure that is present in ``watermark_persistence`` of the
  frames, uniformly spread over the clip, is static while the scene moves; its busiest row in one of the four
  corner boxes gives the stroke count, flagged from ``watermark_min_strokes``.
- Faces: scikit-image's LBP frontal-face cascade on ``face_frames`` of the decoded frames
  (:mod:`ophora.curation.privacy.faces`; OpenCV 5 no longer has Haar cascades). The frames are decoded once,
  high enough for both checks (the text checks get them area-reduced to ``analysis_height``).
"""
from __future__ import annotations

import cv2
import numpy as np

from ophora.curation.config import OverlayConfig
from ophora.curation.dynamics import analysis_size
from ophora.curation.privacy.faces import face_check_height, face_detector, face_scores, sample_positions
from ophora.curation.stage import ClipItem, Stage, Verdict
from ophora.data.video import Uniform, VideoDecodeError, VideoInfo, probe, read_video

__all__ = ["OverlayPrivacyStage", "subtitle_strokes", "watermark_strokes", "face_detector", "decode_size"]

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _runs_per_row(mask: np.ndarray) -> np.ndarray:
    """Number of runs of True in each row of a bool [H, W] mask: int [H]."""
    m = mask.astype(np.int8)
    return (np.diff(m, axis=1) == 1).sum(axis=1) + m[:, 0]


def subtitle_strokes(grey: np.ndarray, band: float, contrast: float) -> np.ndarray:
    """Stroke count per frame in the bottom ``band`` of grey float32 [T, H, W] frames: float [T]."""
    rows = grey[:, grey.shape[1] - max(3, int(round(band * grey.shape[1]))):]
    edges = np.abs(rows[:, :, 2:] - rows[:, :, :-2]) >= contrast
    return np.array([np.sort(_runs_per_row(e))[-2:].mean() for e in edges])


def _kernel(height: int) -> np.ndarray:
    size = max(3, int(round(height / 25)) // 2 * 2 + 1)  # 5 px at 128 px high: a little wider than a stroke
    return np.ones((size, size), np.uint8)


def watermark_strokes(grey: np.ndarray, config: OverlayConfig) -> tuple[int, str]:
    """(stroke count, corner) of the busiest corner row of static bright strokes in grey float32 [T, H, W]."""
    t, h, w = grey.shape
    kernel = _kernel(h)
    bright = [cv2.morphologyEx(f.astype(np.uint8), cv2.MORPH_TOPHAT, kernel) >= config.watermark_tophat for f in grey]
    static = np.mean(bright, axis=0) >= config.watermark_persistence
    bh = max(3, int(config.watermark_box[0] * h))
    bw = max(3, int(config.watermark_box[1] * w))
    boxes = {"top-left": static[:bh, :bw], "top-right": static[:bh, w - bw:],
             "bottom-left": static[h - bh:, :bw], "bottom-right": static[h - bh:, w - bw:]}
    counts = {corner: int(_runs_per_row(box).max()) for corner, box in boxes.items()}
    corner = max(CORNERS, key=lambda c: counts[c])
    return counts[corner], corner


def decode_size(info: VideoInfo, config: OverlayConfig) -> tuple[int, int]:
    """(height, width) to decode at: the text checks' ``analysis_height``, or the face check's height when that
    is larger (never above the clip's own size; both even)."""
    height = config.analysis_height
    if config.faces:
        height = max(height, face_check_height(info.height, config))
    return analysis_size(info, height)


def _reduce(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3] area-reduced to ``size`` (height, width); unchanged when already that size."""
    if frames.shape[1:3] == tuple(size):
        return frames
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])


class OverlayPrivacyStage(Stage):
    """Keeps a clip in the 28K set only without subtitles, watermark or faces (see the module docstring).

    Scores: subtitle_strokes (median per frame), subtitle_fraction (of frames at the threshold),
    watermark_strokes and watermark_corner, and those of :func:`ophora.curation.privacy.faces.face_scores`
    (faces: frames with a face, None when not checked; faces_note says why not).
    """

    name = "privacy"
    gate = "28k"
    algorithm = 2  # v2: faces checked with scikit-image's LBP cascade (v1 could not check faces on OpenCV 5)

    def __init__(self, config: OverlayConfig):
        super().__init__(config)
        self.faces, self.faces_note = face_detector(config)

    def check(self, item: ClipItem) -> Verdict:
        try:
            info = item.info or probe(item.path)
            select = Uniform(min(self.config.frames, max(info.num_frames, 1)))
            size = decode_size(info, self.config)
            native = size == (info.height, info.width)  # decode without rescaling (cheaper, any frame size)
            frames = read_video(item.path, select, size=None if native else size)
        except VideoDecodeError as err:
            return self.verdict(False, f"unreadable video: {err.reason}", error=True)
        indices = select.indices(max(info.num_frames, 1), info.fps)
        scores, findings = self._scores(frames, indices, info)
        if findings:
            return self.verdict(False, "; ".join(findings), scores)
        return self.verdict(True, "ok", scores)

    def _scores(self, frames: np.ndarray, indices: np.ndarray, info: VideoInfo) -> tuple[dict, list[str]]:
        c = self.config
        text_frames = _reduce(frames, analysis_size(info, c.analysis_height))
        grey = text_frames.mean(axis=3, dtype=np.float32)
        per_frame = subtitle_strokes(grey, c.subtitle_band, c.subtitle_contrast)
        fraction = float(np.mean(per_frame >= c.subtitle_min_strokes))
        marks, corner = watermark_strokes(grey, c)
        scores = {"subtitle_strokes": float(np.median(per_frame)), "subtitle_fraction": round(fraction, 3),
                  "watermark_strokes": marks, "watermark_corner": corner}
        scores.update(self._faces(frames, indices, info))
        findings = []
        if fraction >= c.subtitle_min_fraction:
            findings.append(f"burned-in subtitles ({np.median(per_frame):.0f} strokes per text row in "
                            f"{fraction:.0%} of frames)")
        if marks >= c.watermark_min_strokes:
            findings.append(f"watermark in the {corner} corner ({marks} static strokes in a row)")
        if scores["faces"]:
            sides = [box[3] for box in scores["face_boxes"]]
            findings.append(f"face: {scores['faces_found']} found in {scores['faces']} of "
                            f"{len(scores['faces_checked'])} sampled frames (frames {scores['face_frames']}, "
                            f"{min(sides)}-{max(sides)} px)")
        return scores, findings

    def _faces(self, frames: np.ndarray, indices: np.ndarray, info: VideoInfo) -> dict:
        """Face scores on ``face_frames`` of the decoded frames, or faces None with the reason in faces_note."""
        if self.faces is None:
            return {"faces": None, "faces_note": self.faces_note}
        picked = sample_positions(len(frames), self.config.face_frames)
        scores = face_scores(self.faces, frames[picked], indices[picked], (info.height, info.width))
        scores["faces_note"] = (f"checked {len(picked)} frames, faces of {scores['faces_min_px']} px and larger")
        return scores
