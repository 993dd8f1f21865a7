"""Small drawing helpers shared by the OphSim renderer (numpy + cv2, anti-aliased, sub-pixel).

Points are float pixel coordinates (x, y); cv2 draws them with ``SHIFT`` fractional bits so that slow motions
stay smooth at small frame sizes. Images are uint8 RGB [H, W, 3] unless said otherwise.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

SHIFT = 4
_ONE = 1 << SHIFT
AA = cv2.LINE_AA


def fp(points, offset=(0.0, 0.0)) -> np.ndarray:
    """Float pixel points [..., 2] (minus ``offset``) as cv2 fixed-point int32 (use with ``shift=SHIFT``)."""
    pts = (np.asarray(points, dtype=np.float64) - np.asarray(offset, dtype=np.float64)) * _ONE
    return np.round(pts).astype(np.int32)


def px(length: float) -> int:
    """A length in pixels as a cv2 thickness (at least 1)."""
    return max(1, int(round(length)))


def smoothstep(edge0: float, edge1: float, x):
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (works on floats and arrays)."""
    t = np.clip((np.asarray(x, dtype=np.float32) - edge0) / (edge1 - edge0), 0.0, 1.0)
    out = t * t * (3.0 - 2.0 * t)
    return float(out) if out.ndim == 0 else out


def bbox(points, pad: float, shape) -> tuple[int, int, int, int] | None:
    """Integer box (x0, y0, x1, y1) around float ``points`` [N, 2] grown by ``pad`` px, clipped to ``shape``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0 = np.floor(pts.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + pad).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def translucent(canvas: np.ndarray, box, alpha: float, draw: Callable[[np.ndarray, tuple], None]) -> None:
    """Run ``draw(layer, offset)`` on a copy of ``canvas[box]`` and blend it back with opacity ``alpha``.

    ``offset`` is the box's (x0, y0): ``draw`` subtracts it from canvas coordinates (``fp(points, offset)``).
    """
    if box is None or alpha <= 0:
        return
    x0, y0, x1, y1 = box
    roi = canvas[y0:y1, x0:x1]
    if alpha >= 1.0:
        draw(roi, (x0, y0))
        return
    layer = roi.copy()
    draw(layer, (x0, y0))
    cv2.addWeighted(layer, float(min(alpha, 1.0)), roi, float(1.0 - min(alpha, 1.0)), 0.0, dst=roi)


def blend_masked(canvas: np.ndarray, box, layer: np.ndarray, alpha: np.ndarray) -> None:
    """canvas[box] = lerp(canvas[box], layer, alpha); layer uint8/float [h, w, 3], alpha float32 [h, w] in 0..1."""
    x0, y0, x1, y1 = box
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    canvas[y0:y1, x0:x1] = (roi + (layer.astype(np.float32) - roi) * a + 0.5).astype(np.uint8)


def periodic_noise(g: np.random.Generator, n_angles: int, n_low: int, kmax: int, beta: float) -> np.ndarray:
    """Noise periodic along axis 0: float32 [n_angles, n_low], unit std, frequencies 1..kmax with 1/k**beta.

    The random spectrum has a fixed shape, so the same generator state gives the same pattern at any
    ``n_angles`` (sampling density), which keeps textures proportionally identical across frame sizes.
    """
    k = np.arange(1, kmax + 1, dtype=np.float64)[:, None]
    spec = (g.standard_normal((kmax, n_low)) + 1j * g.standard_normal((kmax, n_low))) / k**beta
    full = np.zeros((max(n_angles // 2 + 1, kmax + 1), n_low), dtype=np.complex128)
    full[1:kmax + 1] = spec
    out = np.fft.irfft(full, n=n_angles, axis=0)
    return (out / (out.std() + 1e-9)).astype(np.float32)


def lowfreq_noise(g: np.random.Generator, cells: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Smooth noise float32 [H, W] in about -1..1 from a ``cells`` grid of uniform values, bicubic-resized."""
    grid = g.uniform(-1.0, 1.0, cells).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
