"""PySlowFast's training augmentations for video classifiers, one clip at a time (every frame alike).

**RandAugment as timm defines it** (PySlowFast's ``AUG.AA_TYPE: rand-m7-n4-mstd0.5-inc1`` runs
``slowfast/datasets/rand_augment.py``, timm's ``auto_augment.py`` adapted to lists of frames). A config string
``rand-m<M>-n<N>[-mstd<S>][-inc<0|1>]`` (:func:`parse_randaugment`) draws N ops with replacement from 15
(:data:`RAND_TRANSFORMS`, or :data:`RAND_INCREASING_TRANSFORMS` with ``inc1``); each is applied with probability
0.5, at a magnitude drawn from N(M, S) clipped to [0, 10] (:data:`LEVEL_DENOM`), mapped to the op's argument by
:data:`LEVEL_TO_ARG` (M / 10 of each op's range: rotate up to 30 degrees, shear 0.3, translate 45 % of the side,
enhance 0.1-1.9 or 1 +- 0.9, posterize 4 bits, solarize 256, solarize-add 110), with a random sign where the op
has one. PySlowFast draws the op, the magnitude and the sign once per clip and applies them to every frame
(PIL, bicubic, fill grey 128: ``create_random_augment`` sets only ``translate_const`` and the interpolation).
So ``rand-m7-n4`` is 7/10 of each range, while torchvision's ``RandAugment(magnitude=7)`` is 7/30 of it (31
bins): :class:`VideoRandAugment` is the first, ``impl="torchvision"`` keeps the second as a named option.

**Random erasing** (:class:`VideoRandomErasing`, PySlowFast ``random_erasing.py`` with ``cube=True``,
``AUG.RE_PROB 0.25``, ``RE_MODE pixel``, ``RE_COUNT 1``): with probability p one rectangle of 2-33 % of the
frame (aspect log-uniform in [0.3, 3.33], up to 100 tries) is erased in every frame at the same place, filled
with per-pixel standard-normal noise (in normalised units), drawn afresh for each frame.

Randomness comes from torch's generator (the dataset seeds it per clip and epoch), so a clip's augmentation is a
function of (seed, epoch, clip, sample).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["LEVEL_DENOM", "RAND_TRANSFORMS", "RAND_INCREASING_TRANSFORMS", "LEVEL_TO_ARG", "OPS", "FILL",
           "RandAugmentSpec", "parse_randaugment", "VideoRandAugment", "VideoRandomErasing", "torchvision_strength"]

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM (PySlowFast's _MAX_LEVEL): magnitude M is the fraction M/10 of each range
FILL = (128, 128, 128)  # timm's _FILL: PySlowFast passes no img_mean, so affine ops fill with grey 128

RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                              "TranslateYRel")


# ---------------------------------------------------------------------------------------------------------
# Magnitude -> op argument (``signed`` ops take a random sign, drawn by the caller)


def _fraction(level: float) -> float:
    return level / LEVEL_DENOM


def _rotate(level: float) -> float:
    return _fraction(level) * 30.0  # degrees, signed


def _enhance(level: float) -> float:
    return _fraction(level) * 1.8 + 0.1  # PIL enhance factor in [0.1, 1.9] (1 is the identity)


def _enhance_increasing(level: float) -> float:
    return _fraction(level) * 0.9  # signed offset from the identity factor 1 (clamped at 0.1)


def _shear(level: float) -> float:
    return _fraction(level) * 0.3  # signed


def _translate_rel(level: float) -> float:
    return _fraction(level) * 0.45  # fraction of the side, signed


def _posterize(level: float) -> int:
    return int(_fraction(level) * 4)  # bits kept (fewer bits: stronger), decreasing with M


def _posterize_increasing(level: float) -> int:
    return 4 - _posterize(level)


def _solarize(level: float) -> int:
    return int(_fraction(level) * 256)  # threshold, decreasing strength with M


def _solarize_increasing(level: float) -> int:
    return 256 - _solarize(level)


def _solarize_add(level: float) -> int:
    return int(_fraction(level) * 110)


# name -> (level -> argument, signed); None: the op has no argument
LEVEL_TO_ARG: dict[str, tuple[Callable[[float], float], bool] | None] = {
    "AutoContrast": None, "Equalize": None, "Invert": None,
    "Rotate": (_rotate, True),
    "Posterize": (_posterize, False), "PosterizeIncreasing": (_posterize_increasing, False),
    "Solarize": (_solarize, False), "SolarizeIncreasing": (_solarize_increasing, False),
    "SolarizeAdd": (_solarize_add, False),
    **{name: (_enhance, False) for name in ("Color", "Contrast", "Brightness", "Sharpness")},
    **{f"{name}Increasing": (_enhance_increasing, True) for name in ("Color", "Contrast", "Brightness", "Sharpness")},
    "ShearX": (_shear, True), "ShearY": (_shear, True),
    "TranslateXRel": (_translate_rel, True), "TranslateYRel": (_translate_rel, True),
}


def op_argument(name: str, level: float, negate: bool = False) -> tuple:
    """The arguments of op ``name`` at magnitude ``level`` (``negate``: the random sign came out negative)."""
    entry = LEVEL_TO_ARG[name]
    if entry is None:
        return ()
    to_arg, signed = entry
    value = to_arg(level)
    if signed and negate:
        value = -value
    if name.endswith("Increasing") and name[:-len("Increasing")] in ("Color", "Contrast", "Brightness", "Sharpness"):
        value = max(0.1, 1.0 + value)
    return (value,)


# ---------------------------------------------------------------------------------------------------------
# The ops on one PIL image


def _affine(image: Image.Image, matrix: tuple, resample) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, matrix, resample=resample, fillcolor=FILL)


def _solarize_add_op(image: Image.Image, add: int, thresh: int = 128) -> Image.Image:
    table = [min(255, i + add) if i < thresh else i for i in range(256)]
    return image.point(table * len(image.getbands()))


def _posterize_op(image: Image.Image, bits: int) -> Image.Image:
    return image if bits >= 8 else ImageOps.posterize(image, bits)


OPS: dict[str, Callable[..., Image.Image]] = {
    "AutoContrast": lambda im, resample: ImageOps.autocontrast(im),
    "Equalize": lambda im, resample: ImageOps.equalize(im),
    "Invert": lambda im, resample: ImageOps.invert(im),
    "Rotate": lambda im, degrees, resample: im.rotate(degrees, resample=resample, fillcolor=FILL),
    "Posterize": lambda im, bits, resample: _posterize_op(im, bits),
    "Solarize": lambda im, thresh, resample: ImageOps.solarize(im, thresh),
    "SolarizeAdd": lambda im, add, resample: _solarize_add_op(im, add),
    "Color": lambda im, f, resample: ImageEnhance.Color(im).enhance(f),
    "Contrast": lambda im, f, resample: ImageEnhance.Contrast(im).enhance(f),
    "Brightness": lambda im, f, resample: ImageEnhance.Brightness(im).enhance(f),
    "Sharpness": lambda im, f, resample: ImageEnhance.Sharpness(im).enhance(f),
    "ShearX": lambda im, f, resample: _affine(im, (1, f, 0, 0, 1, 0), resample),
    "ShearY": lambda im, f, resample: _affine(im, (1, 0, 0, f, 1, 0), resample),
    "TranslateXRel": lambda im, pct, resample: _affine(im, (1, 0, pct * im.size[0], 0, 1, 0), resample),
    "TranslateYRel": lambda im, pct, resample: _affine(im, (1, 0, 0, 0, 1, pct * im.size[1]), resample),
}
for _name in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness"):
    OPS[f"{_name}Increasing"] = OPS[_name]

INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


# ---------------------------------------------------------------------------------------------------------
# RandAugment on a clip


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed timm RandAugment string: ``magnitude`` M (of 10), ``num_ops`` N, ``mstd`` (std of the
    magnitude noise), ``increasing`` (the ops whose strength grows with M)."""

    magnitude: float
    num_ops: int = 2
    mstd: float = 0.0
    increasing: bool = False

    @property
    def ops(self) -> tuple[str, ...]:
        return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


def parse_randaugment(text: str) -> RandAugmentSpec:
    """``rand-m7-n4-mstd0.5-inc1`` -> RandAugmentSpec(7, 4, 0.5, True) (timm's ``rand_augment_transform``
    grammar: defaults M 10, N 2, no noise, the plain ops). Raises ValueError naming what is wrong."""
    parts = str(text).split("-")
    if parts[0] != "rand":
        raise ValueError(f"a RandAugment config starts with 'rand-' (timm's grammar, e.g. 'rand-m7-n4-mstd0.5-inc1'), "
                         f"got {text!r}")
    found: dict = {"magnitude": LEVEL_DENOM, "num_ops": 2, "mstd": 0.0, "increasing": False}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|inc|m|n|w)(\d+(?:\.\d+)?)", part)
        if not match:
            raise ValueError(f"RandAugment config {text!r}: cannot read {part!r} (expected m<int>, n<int>, "
                             "mstd<float> or inc<0|1>)")
        key, value = match.groups()
        if key == "w":
            raise ValueError(f"RandAugment config {text!r}: weighted op choice (w) is not supported")
        if key == "m":
            found["magnitude"] = float(int(float(value)))
        elif key == "n":
            found["num_ops"] = int(float(value))
        elif key == "mstd":
            found["mstd"] = float(value)
        else:
            found["increasing"] = bool(int(float(value)))
    if found["num_ops"] < 1:
        raise ValueError(f"RandAugment config {text!r}: n must be >= 1")
    return RandAugmentSpec(**found)


def _uniform() -> float:
    return float(torch.rand(()))


class VideoRandAugment:
    """timm RandAugment (:func:`parse_randaugment`) on a uint8 clip ``[T, 3, H, W]`` (tensor), every frame with
    the same ops, magnitudes and signs. ``record`` (a list) receives ``(op, args)`` of each op applied."""

    def __init__(self, spec: RandAugmentSpec | str, interpolation: str = "bicubic"):
        self.spec = parse_randaugment(spec) if isinstance(spec, str) else spec
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
        self.resample = INTERPOLATIONS[interpolation]
        self.record: list | None = None

    def draw(self) -> list[tuple[str, tuple]]:
        """The ops of one clip: N names drawn with replacement, each kept with probability 0.5, with its
        arguments (magnitude ~ N(M, mstd) clipped to [0, 10]; a random sign where the op has one)."""
        spec, chosen = self.spec, []
        names = spec.ops
        for _ in range(spec.num_ops):
            name = names[int(torch.randint(len(names), ()))]
            if _uniform() > 0.5:  # timm: `if self.prob < 1.0 and random.random() > self.prob: return img`
                continue
            magnitude = spec.magnitude
            if spec.mstd > 0:
                magnitude = magnitude + spec.mstd * float(torch.randn(()))
            magnitude = min(LEVEL_DENOM, max(0.0, magnitude))
            negate = _uniform() > 0.5
            chosen.append((name, op_argument(name, magnitude, negate)))
        return chosen

    def apply(self, frames: np.ndarray, ops: list[tuple[str, tuple]]) -> np.ndarray:
        """Apply ``ops`` to every frame of uint8 ``[T, H, W, 3]``."""
        if not ops:
            return frames
        out = []
        for frame in frames:
            image = Image.fromarray(np.ascontiguousarray(frame))
            for name, args in ops:
                image = OPS[name](image, *args, resample=self.resample)
            out.append(np.asarray(image))
        return np.stack(out)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        ops = self.draw()
        if self.record is not None:
            self.record.append(ops)
        if not ops:
            return video
        frames = video.permute(0, 2, 3, 1).numpy()
        result = torch.from_numpy(self.apply(frames, ops)).permute(0, 3, 1, 2)
        from torchvision import tv_tensors

        return tv_tensors.Video(result) if isinstance(video, tv_tensors.Video) else result


def torchvision_strength(name: str, magnitude: int, num_bins: int = 31) -> float:
    """The argument torchvision's ``RandAugment(magnitude=m)`` uses for an op that both libraries share (for the
    comparison in the tests and the docs): its ``linspace(0, max, num_bins)[m]``."""
    maxima = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "Color": 0.9, "Contrast": 0.9, "Brightness": 0.9,
              "Sharpness": 0.9}
    return float(torch.linspace(0.0, maxima[name], num_bins)[magnitude])


# ---------------------------------------------------------------------------------------------------------
# Random erasing on a clip


class VideoRandomErasing:
    """PySlowFast's cube random erasing on a normalised float clip ``[T, C, H, W]`` (see the module docstring)."""

    def __init__(self, probability: float, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3, tries: int = 100):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"random erasing probability must be in [0, 1], got {probability}")
        self.probability, self.min_area, self.max_area = probability, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
        self.tries = tries
        self.last: tuple[int, int, int, int] | None = None  # (top, left, h, w) of the last erased box

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        self.last = None
        if _uniform() > self.probability:
            return video
        frames, channels, height, width = video.shape
        area = height * width
        for _ in range(self.tries):
            target = (self.min_area + (self.max_area - self.min_area) * _uniform()) * area
            aspect = math.exp(self.log_aspect[0] + (self.log_aspect[1] - self.log_aspect[0]) * _uniform())
            h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                top = int(torch.randint(height - h + 1, ()))
                left = int(torch.randint(width - w + 1, ()))
                video = video.clone()
                video[:, :, top:top + h, left:left + w] = torch.randn(frames, channels, h, w, dtype=video.dtype)
                self.last = (top, left, h, w)
                break
        return video
