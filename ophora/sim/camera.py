"""The microscope camera of one clip: slow zoom, smooth drift, white balance, vignetting and sensor noise.

Motion is low-frequency in clip time (0..1) so that consecutive frames always differ a little and never jump;
left eyes are produced by mirroring the right-eye scene inside the same affine warp. Illumination and colour
temperature vary per clip so that global colour does not identify a phase.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NOISE_BANK = 6  # distinct noise frames per clip, cycled


@dataclass(frozen=True)
class Camera:
    """Per-clip camera: zoom from ``zoom[0]`` to ``zoom[1]``; drift/rotation amplitudes as fractions of
    min(H, W) / degrees; ``freqs`` in cycles per clip; ``gain`` RGB multipliers (illumination x white balance);
    ``vignette`` 0..1 corner darkening; ``noise`` std in grey levels; ``mirror`` for left eyes."""

    zoom: tuple[float, float]
    drift: float
    rotation: float
    freqs: tuple[float, ...]
    phases: tuple[float, ...]
    gain: tuple[float, float, float]
    vignette: float
    noise: float
    mirror: bool


def sample_camera(g: np.random.Generator, mirror: bool) -> Camera:
    """Draw one clip's camera; warm or cool white balance, dim or bright illumination."""
    z0 = g.uniform(1.02, 1.16)
    temp = g.uniform(-1.0, 1.0)
    level = g.uniform(0.74, 1.1)
    gain = (level * (1 + 0.07 * temp), level, level * (1 - 0.06 * temp))
    return Camera((z0, z0 * g.uniform(0.95, 1.05)), float(g.uniform(0.004, 0.012)), float(g.uniform(0.2, 1.0)),
                  tuple(g.uniform(0.25, 1.2, 6)), tuple(g.uniform(0, 2 * np.pi, 6)), gain,
                  float(g.uniform(0.3, 0.6)), float(g.uniform(0.5, 1.5)), mirror)


def camera_matrix(cam: Camera, t: float, size: tuple[int, int]) -> np.ndarray:
    """Affine scene -> frame matrix float64 [2, 3] at clip time ``t`` (0..1)."""
    h, w = size
    s = min(h, w)
    f, ph = cam.freqs, cam.phases
    zoom = cam.zoom[0] + (cam.zoom[1] - cam.zoom[0]) * (3 * t * t - 2 * t * t * t)
    dx = cam.drift * s * (np.sin(2 * np.pi * f[0] * t + ph[0]) + 0.5 * np.sin(2 * np.pi * f[1] * t + ph[1]))
    dy = cam.drift * s * (np.sin(2 * np.pi * f[2] * t + ph[2]) + 0.5 * np.sin(2 * np.pi * f[3] * t + ph[3]))
    angle = cam.rotation * np.sin(2 * np.pi * f[4] * t + ph[4])
    m = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom), [0, 0, 1]])
    m[:2, 2] += (dx, dy)
    if cam.mirror:
        m = m @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return m[:2]


def gain_map(cam: Camera, size: tuple[int, int]) -> np.ndarray:
    """Illumination x white balance x vignetting, float32 [H, W, 3]."""
    h, w = size
    y = (np.arange(h, dtype=np.float32) - h / 2) / (h / 2)
    x = (np.arange(w, dtype=np.float32) - w / 2) / (w / 2)
    r2 = (x[None, :] ** 2 * w * w + y[:, None] ** 2 * h * h) / (w * w + h * h)  # 1 at the corners
    vignette = 1.0 - cam.vignette * r2**1.5
    return vignette[..., None] * np.array(cam.gain, np.float32)


def noise_bank(cam: Camera, size: tuple[int, int], g: np.random.Generator) -> np.ndarray:
    """Monochrome sensor noise float32 [NOISE_BANK, H, W, 1] (grey levels); equal in R, G, B so that it does
    not flicker the hue of near-grey pixels. Includes +0.5 so that the uint8 cast rounds."""
    bank = g.standard_normal((NOISE_BANK, size[0], size[1], 1), dtype=np.float32) * np.float32(cam.noise)
    return bank + np.float32(0.5)


def expose(scene: np.ndarray, matrix: np.ndarray, gains: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Warp the uint8 scene [H, W, 3] into the frame, apply gains and add noise: uint8 [H, W, 3]."""
    h, w = scene.shape[:2]
    frame = cv2.warpAffine(scene, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    out = frame.astype(np.float32)
    out *= gains
    out += noise
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)
