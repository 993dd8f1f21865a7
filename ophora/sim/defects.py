"""Planted clip defects with ground truth: what OphSim's curation pipeline must find and filter.

Five kinds, each a pure function of the frames and a numpy Generator (the input array is never modified):

- ``cut``: hard scene cut; frames from ``cut_frame`` on come from another clip (the donor).
- ``frozen``: one frame repeated over the clip, with sparse +-1 grey-level noise (consecutive frames differ by
  about 0.2 grey levels on average).
- ``lowres``: the clip downscaled by an integer factor; the writer stores it at the reduced size.
- ``subtitles``: burned-in white subtitles with a black outline at the bottom centre, changing every 1-2 s.
- ``watermark``: a static, semi-transparent channel name in one corner.

Frames are uint8 RGB ``[T, H, W, 3]``; text is drawn with OpenCV's Hershey simplex font, scaled to the frame
(64x64 up to 480x720). Every ``PlantedDefect.params`` holds plain JSON-serialisable values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

DEFECT_KINDS = ("cut", "frozen", "lowres", "subtitles", "watermark")

# PySceneDetect's ContentDetector reports a first cut only if it lies at least `min_scene_len` (default 15)
# frames after the clip start; cuts are planted at or after this frame when the clip is long enough.
CUT_MIN_FRAME = 15
CUT_RANGE = (0.3, 0.7)  # cut position as a fraction of T, away from the ends
FROZEN_NOISE_PROB = 0.1  # fraction of pixels given +-1 grey level of noise in each frozen frame
LOWRES_FACTORS = (2, 3)
SUBTITLE_SECONDS = (1.0, 2.0)  # each subtitle line stays on screen this long
WATERMARK_ALPHA = (0.35, 0.6)
TEXT_THICKNESS = 2  # OpenCV 5 draws thickness >= 2 as bold; bold stays legible down to 64x64 frames
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")

SUBTITLE_LINES = (
    "now we make the main incision", "fill the chamber with viscoelastic", "start the rhexis here",
    "regrasp the flap often", "gentle hydrodissection", "rotate the nucleus freely", "sculpt a deep groove",
    "chop into four quadrants", "aspirate the cortex", "polish the posterior capsule", "inject the lens slowly",
    "dial the lens into the bag", "remove all the viscoelastic", "hydrate the wounds", "subscribe for more",
    "dense cataract in this case", "keep the chamber stable", "watch the pupil margin", "thanks for watching",
)
WATERMARK_TEXTS = ("EyeSurgeryChannel", "(c) Dr. Lee", "CataractTube", "OphthoLive", "(c) EyeClinic",
                   "SurgeryVids", "Dr. Patel MD", "PhacoMaster")


@dataclass(frozen=True)
class PlantedDefect:
    """One planted defect: its kind and the parameters that locate it (e.g. {"cut_frame": 13}, {"factor": 2}).

    ``params`` per kind: cut {cut_frame, donor_offset}; frozen {source_frame, noise_prob}; lowres {factor, height,
    width}; subtitles {texts, change_frames, band_top, font_scale}; watermark {text, corner, alpha, box}, with
    box = [y0, y1, x0, x1) in pixels.
    """

    kind: str
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Text drawing


def _fit_scale(text: str, max_w: float, max_h: float, thickness: int = TEXT_THICKNESS) -> float:
    """Largest Hershey-simplex font scale at which ``text`` fits a max_w x max_h pixel box."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, thickness)
    return max(0.1, min(max_w / w, max_h / (h + base)))


def _text_size(text: str, scale: float, thickness: int) -> tuple[int, int, int]:
    """(width, height above baseline, baseline depth) of ``text`` in pixels."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return w, h, base


def _text_alpha(h: int, w: int, text: str, org: tuple[int, int], scale: float, thickness: int) -> np.ndarray:
    """float32 [H, W] coverage (0..1) of ``text`` drawn with its baseline-left corner at ``org`` (x, y)."""
    mask = np.zeros((h, w), np.uint8)
    cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    return mask.astype(np.float32) / 255.0


def _outline_alpha(text_alpha: np.ndarray, radius: int) -> np.ndarray:
    """The text coverage grown by ``radius`` pixels: a border to draw under the text.

    A dilated mask rather than a thicker stroke, because OpenCV 5's putText ignores thicknesses above 2.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(text_alpha, kernel)


def _composite(frames: np.ndarray, alpha: np.ndarray, color: float) -> np.ndarray:
    """frames uint8 [T, H, W, 3] blended towards grey level ``color`` (0..255) with coverage alpha float [H, W]."""
    a = alpha[None, :, :, None]
    out = frames.astype(np.float32) * (1.0 - a) + color * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# The five defects


def _plant_cut(frames: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None, fps: float):
    """Frames ``cut_frame:`` replaced by consecutive donor frames (resized to the clip's size if needed)."""
    if donor is None or len(donor) == 0:
        raise ValueError("plant_defect('cut') needs donor frames: pass donor=<uint8 [T, H, W, 3] of another clip>")
    t, h, w = frames.shape[:3]
    if t < 2:
        raise ValueError(f"a cut needs a clip of at least 2 frames; got {t}")
    hi = int(math.floor(CUT_RANGE[1] * t))
    lo = max(int(math.ceil(CUT_RANGE[0] * t)), min(CUT_MIN_FRAME, hi))
    cut = int(rng.integers(lo, hi + 1))
    offset = int(rng.integers(len(donor)))
    idx = (offset + np.arange(t - cut)) % len(donor)
    tail = donor[idx]
    if tail.shape[1:3] != (h, w):
        tail = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in tail])
    out = frames.copy()
    out[cut:] = tail
    return out, {"cut_frame": cut, "donor_offset": offset}


def _plant_frozen(frames: np.ndarray, rng: np.random.Generator, donor, fps: float):
    """One frame of the clip repeated T times, each copy with +-1 noise on FROZEN_NOISE_PROB of its values."""
    source = int(rng.integers(len(frames)))
    out = np.repeat(frames[source:source + 1], len(frames), axis=0).astype(np.int16)
    hit = rng.random(out.shape) < FROZEN_NOISE_PROB
    out += (hit * rng.choice(np.array([-1, 1], dtype=np.int16), size=out.shape)).astype(np.int16)
    return np.clip(out, 0, 255).astype(np.uint8), {"source_frame": source, "noise_prob": FROZEN_NOISE_PROB}


def _plant_lowres(frames: np.ndarray, rng: np.random.Generator, donor, fps: float):
    """The clip downscaled by an integer factor (area filter); sizes rounded down to even (yuv420p-safe)."""
    factor = int(rng.choice(LOWRES_FACTORS))
    h, w = frames.shape[1:3]
    nh, nw = max(2, (h // factor) // 2 * 2), max(2, (w // factor) // 2 * 2)
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames])
    return out, {"factor": factor, "height": nh, "width": nw}


def _subtitle_schedule(t: int, fps: float, rng: np.random.Generator) -> tuple[list[int], list[str]]:
    """Frame indices where a new subtitle line starts, and the lines (consecutive lines differ)."""
    starts, lines, frame = [], [], 0
    while frame < t:
        line = str(rng.choice(SUBTITLE_LINES))
        while lines and line == lines[-1]:
            line = str(rng.choice(SUBTITLE_LINES))
        starts.append(frame)
        lines.append(line)
        frame += max(1, int(round(rng.uniform(*SUBTITLE_SECONDS) * fps)))
    return starts, lines


def _plant_subtitles(frames: np.ndarray, rng: np.random.Generator, donor, fps: float):
    """White subtitles with a black outline, centred in the bottom band (rows ``band_top`` to H), a new line
    every 1-2 s."""
    t, h, w = frames.shape[:3]
    starts, lines = _subtitle_schedule(t, fps, rng)
    longest = max(lines, key=lambda s: _text_size(s, 1.0, TEXT_THICKNESS)[0])
    scale = _fit_scale(longest, 0.88 * w, 0.09 * h)
    thick, radius = TEXT_THICKNESS, max(1, int(round(1.5 * scale)))
    margin = max(2, int(0.04 * h))
    out = frames.copy()
    band_top = h
    for k, (start, line) in enumerate(zip(starts, lines)):
        end = starts[k + 1] if k + 1 < len(starts) else t
        tw, th, base = _text_size(line, scale, thick)
        org = ((w - tw) // 2, h - margin - base)
        band_top = min(band_top, org[1] - th - radius - 2)
        text = _text_alpha(h, w, line, org, scale, thick)
        shadowed = _composite(out[start:end], _outline_alpha(text, radius), 0.0)
        out[start:end] = _composite(shadowed, text, 255.0)
    params = {"texts": lines, "change_frames": starts, "band_top": max(0, band_top), "font_scale": scale}
    return out, params


def _watermark_alpha(text: str, h: int, w: int, corner: str) -> tuple[np.ndarray, list[int]]:
    """float32 [H, W] coverage (0..1) of ``text`` in ``corner`` and its bounding box [y0, y1, x0, x1)."""
    scale = _fit_scale(text, (0.3 if w >= 256 else 0.45) * w, 0.07 * h)
    thick = TEXT_THICKNESS
    tw, th, base = _text_size(text, scale, thick)
    margin = max(2, int(0.03 * min(h, w)))
    x = margin if corner.endswith("left") else w - margin - tw
    y = margin + th if corner.startswith("top") else h - margin - base
    alpha = _text_alpha(h, w, text, (x, y), scale, thick)
    ys, xs = np.nonzero(alpha)
    box = [int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1] if len(ys) else [0, 0, 0, 0]
    return alpha, box


def _plant_watermark(frames: np.ndarray, rng: np.random.Generator, donor, fps: float):
    """A static white channel name blended with opacity 0.35-0.6 into one corner of every frame."""
    t, h, w = frames.shape[:3]
    text, corner = str(rng.choice(WATERMARK_TEXTS)), str(rng.choice(CORNERS))
    opacity = float(rng.uniform(*WATERMARK_ALPHA))
    alpha, box = _watermark_alpha(text, h, w, corner)
    out = _composite(frames, opacity * alpha, 255.0)
    return out, {"text": text, "corner": corner, "alpha": opacity, "box": box}


_PLANTERS = {"cut": _plant_cut, "frozen": _plant_frozen, "lowres": _plant_lowres,
             "subtitles": _plant_subtitles, "watermark": _plant_watermark}


# ---------------------------------------------------------------------------------------------------------------
# Public API


def plant_defect(kind: str, frames: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None,
                 fps: float = 8.0) -> tuple[np.ndarray, PlantedDefect]:
    """Plant one defect of ``kind`` into a copy of ``frames``.

    frames: uint8 [T, H, W, 3] RGB (never modified); donor: uint8 [T', H', W', 3] frames of a different clip,
    needed for "cut"; fps: frame rate, used to time subtitle changes. Returns the new frames (for "lowres"
    [T, H/f, W/f, 3], otherwise the input shape) and the ground truth.
    """
    if kind not in _PLANTERS:
        raise ValueError(f"unknown defect kind {kind!r}; known kinds: {', '.join(DEFECT_KINDS)}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1; got {frames.dtype} {frames.shape}")
    out, params = _PLANTERS[kind](frames, rng, donor, fps)
    return out, PlantedDefect(kind, params)


def plant_defects(kinds: list[str], frames: np.ndarray, rng: np.random.Generator,
                  donor: np.ndarray | None = None, fps: float = 8.0) -> tuple[np.ndarray, list[PlantedDefect]]:
    """Plant several defects in turn ("lowres" last, so the others are drawn at full size)."""
    ordered = sorted(kinds, key=lambda k: k == "lowres")
    planted = []
    for kind in ordered:
        frames, defect = plant_defect(kind, frames, rng, donor=donor, fps=fps)
        planted.append(defect)
    return frames, planted


def content_score(a: np.ndarray, b: np.ndarray) -> float:
    """PySceneDetect ContentDetector's score between two uint8 [H, W, 3] RGB frames.

    The mean absolute difference of hue, saturation and value (OpenCV HSV), averaged over the three
    channels with ContentDetector's default weights; ContentDetector reports a cut above 27.
    """
    hsv_a = cv2.cvtColor(a, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv_b = cv2.cvtColor(b, cv2.COLOR_RGB2HSV).astype(np.float32)
    return float(np.abs(hsv_a - hsv_b).mean())


def choose_defects(rate: float, rng: np.random.Generator) -> list[str]:
    """Defect kinds for one clip: with probability ``rate`` exactly one kind, chosen uniformly; else [].

    One kind at most keeps the ground truth simple: a defective clip has exactly one reason to be removed.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a probability in [0, 1]; got {rate}")
    if rng.random() >= rate:
        return []
    return [DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]]


def defect_flags(defects: list[PlantedDefect]) -> dict[str, bool]:
    """{kind: whether that kind was planted} for every kind in DEFECT_KINDS (one row of the side table)."""
    planted = {d.kind for d in defects}
    return {kind: kind in planted for kind in DEFECT_KINDS}
