"""Graded degradations of real clips: what each does to ``frames: uint8 [T, H, W, 3]`` at a given strength.

Each degradation has a family (spatial, temporal, content, text), a strength unit and an identity strength (the
real clip itself). ``kind = "frames"``: every clip of the set goes through :attr:`Degradation.apply`;
``kind = "clips"``: the strength is the fraction of clips changed (reversed, replaced by clips of one or two
phases, re-rendered with a foreign instrument, given another phase's prompt), chosen by :func:`chosen_clips`
so that a stronger set changes a superset of the clips of a weaker one. Random choices come from a generator
seeded per (suite seed, degradation, clip), the same at every strength, so strengths differ only in degree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ophora.seeding import rng

__all__ = ["Degradation", "DEGRADATIONS", "FAMILIES", "blur", "noise", "jpeg", "colour_shift", "lost_resolution",
           "shuffle", "reverse", "freeze", "stutter", "slow_motion", "chosen_clips"]

FAMILIES = ("spatial", "temporal", "content", "text")


def blur(frames: np.ndarray, sigma: float, g: np.random.Generator | None = None) -> np.ndarray:
    """Gaussian blur of every frame with standard deviation ``sigma`` (pixels)."""
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT) for f in frames])


def noise(frames: np.ndarray, std: float, g: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``std`` (grey levels 0-255), independent per pixel."""
    noisy = frames.astype(np.float32) + g.normal(0.0, std, frames.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg(frames: np.ndarray, strength: float, g: np.random.Generator | None = None) -> np.ndarray:
    """Every frame through JPEG at quality ``100 - strength`` (strength 0-99; higher is worse)."""
    quality = int(round(100 - strength))
    out = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG frame")
        out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def colour_shift(frames: np.ndarray, shift: float, g: np.random.Generator | None = None) -> np.ndarray:
    """A warmer colour cast: red raised and blue lowered by ``shift`` grey levels (clipped to 0-255)."""
    out = frames.astype(np.int16)
    out[..., 0] += int(round(shift))
    out[..., 2] -= int(round(shift))
    return np.clip(out, 0, 255).astype(np.uint8)


def lost_resolution(frames: np.ndarray, factor: float, g: np.random.Generator | None = None) -> np.ndarray:
    """Downscale by ``factor`` (area filter), then upscale back to the frame size (bilinear)."""
    height, width = frames.shape[1:3]
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.stack([cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (width, height),
                                interpolation=cv2.INTER_LINEAR) for f in frames])


def shuffle(frames: np.ndarray, fraction: float, g: np.random.Generator) -> np.ndarray:
    """A ``fraction`` of the frame positions (at least two when any) exchange frames so that every chosen
    position gets another one (a cyclic shift of the chosen positions in random order); the rest stay."""
    count = round(fraction * len(frames))
    if count < 2:
        return frames.copy()
    chosen = g.permutation(len(frames))[:count]
    out = frames.copy()
    out[chosen] = frames[np.roll(chosen, 1)]
    return out


def reverse(frames: np.ndarray, fraction: float = 1.0, g: np.random.Generator | None = None) -> np.ndarray:
    """The clip played backwards (the ``reverse`` degradation reverses a fraction of the clips)."""
    return frames[::-1].copy()


def freeze(frames: np.ndarray, fraction: float, g: np.random.Generator | None = None) -> np.ndarray:
    """The clip stops: its last ``fraction`` of frames repeat the frame before them (all of them: the first)."""
    count = min(len(frames) - 1, round(fraction * len(frames)))
    out = frames.copy()
    if count > 0:
        out[len(frames) - count:] = frames[len(frames) - count - 1]
    return out


def stutter(frames: np.ndarray, fraction: float, g: np.random.Generator) -> np.ndarray:
    """Dropped frames shown as duplicates: a ``fraction`` of the frames (never the first) is dropped and each
    dropped position repeats the last kept frame, so the frame count is unchanged."""
    count = min(len(frames) - 1, round(fraction * len(frames)))
    dropped = np.zeros(len(frames), bool)
    dropped[1 + g.permutation(len(frames) - 1)[:count]] = True
    source = np.maximum.accumulate(np.where(dropped, 0, np.arange(len(frames))))
    return frames[source].copy()


def slow_motion(frames: np.ndarray, factor: float, g: np.random.Generator | None = None) -> np.ndarray:
    """Played ``factor`` times slower at the same frame count: frame t shows source time t / factor, blended
    linearly between the two nearest source frames (so the clip covers its first 1/factor)."""
    position = np.arange(len(frames)) / factor
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(frames) - 1)
    weight = (position - low).astype(np.float32)[:, None, None, None]
    blended = (1 - weight) * frames[low].astype(np.float32) + weight * frames[high].astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Degradation:
    """``apply(frames, strength, g)`` for ``kind="frames"`` (None for ``"clips"``, built by the set builder);
    ``needs``: what the real set must have (``labels``: phase labels, ``world``: an OphSim world, ``prompts``)."""

    name: str
    family: str
    unit: str
    identity: float
    kind: str
    apply: Callable[..., np.ndarray] | None = None
    needs: tuple[str, ...] = ()
    description: str = ""


DEGRADATIONS: dict[str, Degradation] = {d.name: d for d in (
    Degradation("blur", "spatial", "Gaussian sigma (px)", 0.0, "frames", blur, description="Gaussian blur"),
    Degradation("noise", "spatial", "noise std (grey levels)", 0.0, "frames", noise,
                description="additive Gaussian noise"),
    Degradation("jpeg", "spatial", "100 - JPEG quality", 0.0, "frames", jpeg, description="JPEG compression"),
    Degradation("colour_shift", "spatial", "R+ / B- shift (grey levels)", 0.0, "frames", colour_shift,
                description="warm colour cast"),
    Degradation("lost_resolution", "spatial", "downscale factor", 1.0, "frames", lost_resolution,
                description="downscale then upscale"),
    Degradation("shuffle", "temporal", "fraction of frames moved", 0.0, "frames", shuffle,
                description="frames shuffled inside each clip"),
    Degradation("reverse", "temporal", "fraction of clips reversed", 0.0, "clips", description="clips reversed"),
    Degradation("freeze", "temporal", "fraction of frames frozen", 0.0, "frames", freeze,
                description="the clip stops and its last frames repeat"),
    Degradation("stutter", "temporal", "fraction of frames dropped", 0.0, "frames", stutter,
                description="dropped frames shown as duplicates"),
    Degradation("slow_motion", "temporal", "slow-down factor", 1.0, "frames", slow_motion,
                description="speed change: played slower at the same frame count"),
    Degradation("mode_collapse", "content", "fraction of clips replaced", 0.0, "clips", needs=("labels",),
                description="clips replaced by clips of one or two phases"),
    Degradation("wrong_instrument", "content", "fraction of clips replaced", 0.0, "clips", needs=("world",),
                description="clips re-rendered with an instrument that does not belong to the phase (OphSim)"),
    Degradation("wrong_phase_prompt", "text", "fraction of prompts swapped", 0.0, "clips",
                needs=("labels", "prompts"), description="prompts that name another phase"),
)}


def chosen_clips(count: int, fraction: float, seed: int, name: str) -> list[int]:
    """Positions (of ``count`` eligible clips) that a set-level degradation changes at ``fraction``: the first
    ``round(fraction * count)`` (halves rounded up) of one seeded order, in that order, so stronger sets change
    a superset of the clips of weaker ones and each clip keeps its rank."""
    order = rng(seed, "sanity", name, "order").permutation(count)
    return [int(i) for i in order[:min(count, math.floor(fraction * count + 0.5))]]
