"""The pupil, drawn per frame: red reflex, cataractous lens, residual cortex, capsule and hydrodissection wave.

Everything here is composed in a square region of interest (ROI) around the eye centre that holds the fully
dilated pupil, then blended into the frame through an anti-aliased pupil mask, so a constricting pupil hides
what lies behind the iris. Lengths are in units of the limbus radius R unless named ``*_px``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ophora.sim.draw import AA, SHIFT, fp, lowfreq_noise, px, smoothstep, translucent
from ophora.sim.eye import Layout, make_layout
from ophora.sim.patient import Patient
from ophora.sim.state import EyeState

NUCLEUS_RADIUS = 0.47  # of R: the visible nucleus + epinucleus
_WHITE_CORTEX = np.array((236, 230, 212), np.float32)


@dataclass(frozen=True)
class PupilStatic:
    """Per-(patient, size) arrays of the pupil ROI: box (x0, y0, x1, y1) in scene px, float32 [h, w] maps."""

    box: tuple[int, int, int, int]
    centre: tuple[float, float]  # eye centre in ROI px
    r: np.ndarray            # distance from the eye centre, R units
    u: np.ndarray            # coordinate along the main incision direction, R units
    v: np.ndarray            # coordinate across it, R units
    quadrant: np.ndarray     # removal order 0..3 of the nucleus quadrant each pixel lies in
    reflex: np.ndarray       # [h, w, 3] fundus red reflex, 0..255
    lens_rgba: np.ndarray    # [h, w, 4] nucleus colour and opacity before rotation
    wisps: np.ndarray        # residual cortex strands, opacity 0..1
    wisp_rank: np.ndarray    # 0..1 order in which the strands are aspirated
    plaque: np.ndarray       # posterior-capsule plaque specks, opacity 0..1


def _roi(lay: Layout, radius: float) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """Box around the eye centre holding a disk of ``radius`` (R units), and its X, Y maps in R units."""
    half = radius * lay.radius + 3
    x0, y0 = max(int(np.floor(lay.cx - half)), 0), max(int(np.floor(lay.cy - half)), 0)
    x1, y1 = min(int(np.ceil(lay.cx + half)) + 1, lay.width), min(int(np.ceil(lay.cy + half)) + 1, lay.height)
    xs = (np.arange(x0, x1, dtype=np.float32) - lay.cx) / lay.radius
    ys = (np.arange(y0, y1, dtype=np.float32) - lay.cy) / lay.radius
    X, Y = np.meshgrid(xs, ys)
    return (x0, y0, x1, y1), X, Y


def _lens_rgba(p: Patient, r, theta, g) -> np.ndarray:
    """Nucleus colour (0..255) and opacity as float32 [h, w, 4]: lamellae, cortical spokes, brunescent core."""
    grey_yellow, amber = np.array((220, 208, 172), np.float32), np.array((166, 112, 50), np.float32)
    colour = grey_yellow + (amber - grey_yellow) * p.brunescence
    rn = r / NUCLEUS_RADIUS
    spokes = sum(np.cos(k * theta + g.uniform(0, 2 * np.pi)) * g.uniform(0.3, 1.0) for k in (5, 7, 11, 13))
    shade = 1.0 + 0.06 * np.cos(rn * 14) - 0.25 * p.brunescence * np.exp(-(rn / 0.5) ** 2)
    rgb = colour * shade[..., None] + 14 * np.clip(spokes, 0, None)[..., None] * smoothstep(0.5, 1.0, rn)[..., None]
    alpha = np.minimum(1.0, p.lens_opacity * (0.75 + 0.35 * np.exp(-(rn / 0.6) ** 2))) * (1 - smoothstep(0.8, 1.05, rn))
    return np.dstack([rgb, alpha]).astype(np.float32)


def _strands(lay: Layout, shape, box, g, count: int, r_range, length, width) -> tuple[np.ndarray, np.ndarray]:
    """Radial whitish strands: opacity float32 [h, w] and the 0..1 rank of each strand (by angle)."""
    mask = np.zeros(shape, np.uint8)
    rank = np.zeros(shape, np.float32)
    angles = np.sort(g.uniform(0, 2 * np.pi, count))
    for i, a in enumerate(angles):
        r = g.uniform(*r_range) + np.linspace(0, length, 5) * g.uniform(0.6, 1.0)
        a = a + np.cumsum(g.normal(0, 0.1, 5))
        pts = lay.to_px(np.stack([r * np.cos(a), r * np.sin(a)], 1))
        layer = np.zeros(shape, np.uint8)
        cv2.polylines(layer, [fp(pts, box[:2])], False, 255, px(width * g.uniform(0.6, 1.4) * lay.radius), AA, SHIFT)
        mask = np.maximum(mask, layer)
        rank[layer > 0] = (i + 0.5) / count
    sigma = max(0.6, 0.015 * lay.radius)
    grow = np.ones((2 * int(np.ceil(2 * sigma)) + 1,) * 2, np.uint8)  # the blurred halo takes its strand's rank
    return cv2.GaussianBlur(mask, (0, 0), sigma).astype(np.float32) / 255.0, cv2.dilate(rank, grow)


@lru_cache(maxsize=16)
def pupil_static(patient: Patient, size: tuple[int, int]) -> PupilStatic:
    """Precompute the pupil ROI of ``patient`` at frame size (H, W)."""
    lay = make_layout(patient, tuple(size))
    g = np.random.default_rng(patient.texture_seed + 1)
    box, X, Y = _roi(lay, patient.pupil_radius)
    r, theta = np.sqrt(X * X + Y * Y), np.arctan2(Y, X)
    port = np.array([np.cos(lay.main_angle), np.sin(lay.main_angle)], np.float32)
    u, v = X * port[0] + Y * port[1], -X * port[1] + Y * port[0]
    sector = ((np.arctan2(v, u) % (2 * np.pi)) // (np.pi / 2)).astype(np.int32)
    quadrant = ((sector + 2) % 4).astype(np.float32)  # the quadrant opposite the incision goes first
    noise = lowfreq_noise(g, (5, 5), r.shape)
    glow = 0.62 + 0.45 * np.exp(-(r / 0.42) ** 2) + 0.05 * noise
    reflex = np.array(patient.reflex_rgb, np.float32) * glow[..., None]
    lens = _lens_rgba(patient, r, theta, g)
    wisps, rank = _strands(lay, r.shape, box, g, 11, (0.3, 0.4), 0.35, 0.045)
    specks, _ = _strands(lay, r.shape, box, g, 14, (0.0, 0.3), 0.04, 0.02)
    return PupilStatic(box, (lay.cx - box[0], lay.cy - box[1]), r, u, v, quadrant, reflex.astype(np.float32), lens,
                       wisps, rank, specks)


def _nucleus_alpha(ps: PupilStatic, lens_a: np.ndarray, s: EyeState) -> np.ndarray:
    """Nucleus opacity float32 [h, w] after sculpting (grooves) and quadrant removal."""
    alpha = lens_a.copy()
    if s.grooves > 0:
        inside = (ps.r < NUCLEUS_RADIUS).astype(np.float32)
        g1 = np.exp(-((ps.v / 0.07) ** 4)) * min(s.grooves, 1.0)
        g2 = np.exp(-((ps.u / 0.07) ** 4)) * min(max(s.grooves - 1.0, 0.0), 1.0)
        alpha *= 1.0 - 0.85 * inside * np.maximum(g1, g2)
    if s.nucleus < 1.0:
        left = np.clip(4.0 * s.nucleus - 3.0 + ps.quadrant, 0.0, 1.0)
        alpha *= 1.0 - smoothstep(-0.03, 0.03, ps.r - NUCLEUS_RADIUS * np.sqrt(left))
    return alpha


def _lens_layer(ps: PupilStatic, s: EyeState, patient: Patient) -> np.ndarray:
    """Pupil content float32 [h, w, 3] (0..255) before the capsule lines and the pupil mask."""
    col = ps.reflex.copy()
    lens = ps.lens_rgba
    if s.nucleus_rot:
        h, w = ps.r.shape
        rot = cv2.getRotationMatrix2D(ps.centre, float(np.rad2deg(s.nucleus_rot)), 1.0)
        lens = cv2.warpAffine(lens, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if s.nucleus > 0:
        haze = 0.5 * patient.lens_opacity * s.nucleus
        col = col * (1 - haze) + lens[..., :3].mean(axis=(0, 1)) * haze
        a = _nucleus_alpha(ps, lens[..., 3], s)[..., None]
        col += (lens[..., :3] - col) * a
    if s.nucleus < 1 and s.cortex > 0:
        vis = ps.wisps * np.clip((s.cortex - ps.wisp_rank) * 9.0, 0, 1) * (1 - s.nucleus)
        col += (_WHITE_CORTEX - col) * (0.6 * vis)[..., None]
    if s.nucleus == 0 and s.plaque > 0:
        col += (_WHITE_CORTEX - col) * (0.35 * s.plaque * ps.plaque)[..., None]
    if s.wave >= 0:
        front = -0.9 * patient.pupil_radius + 1.8 * patient.pupil_radius * s.wave - 0.8 * ps.v**2
        band = np.exp(-(((ps.u - front) / 0.035) ** 2))
        col += (np.array((255, 238, 196), np.float32) - col) * (0.55 * band)[..., None]
    return col


def _capsule_lines(layer: np.ndarray, lay: Layout, patient: Patient, s: EyeState, box) -> None:
    """Puncture flap and the (partial) capsulorhexis edge on the uint8 pupil layer, in place."""
    rr = patient.rhexis_radius * lay.radius
    start = np.rad2deg(lay.main_angle) + 200.0
    centre = fp((lay.cx, lay.cy), box[:2])
    if s.puncture > 0 and s.rhexis < 1:
        a = np.deg2rad(start)
        tip = lay.to_px((patient.rhexis_radius * np.cos(a), patient.rhexis_radius * np.sin(a)))
        d = lay.radius * 0.06 * s.puncture
        tri = [tip, tip + (d, -d * 0.4), tip + (-d * 0.3, d)]
        translucent(layer, (0, 0) + layer.shape[1::-1], 0.5 * (1 - s.rhexis), lambda im, o: cv2.fillPoly(
            im, [fp(tri, box[:2])], (250, 240, 215), AA, SHIFT))
    if s.rhexis > 0:
        alpha = 0.55 if s.nucleus > 0 else 0.35
        sweep = 360.0 * s.rhexis

        def edge(im, _):
            cv2.ellipse(im, centre, fp((rr, rr)), 0, start, start + sweep, (252, 244, 222), px(0.014 * lay.radius),
                        AA, SHIFT)
        translucent(layer, (0, 0) + layer.shape[1::-1], alpha, edge)


def draw_pupil(canvas: np.ndarray, lay: Layout, patient: Patient, s: EyeState) -> float:
    """Compose the pupil of state ``s`` into ``canvas`` (uint8 [H, W, 3], in place); return its radius in px."""
    ps = pupil_static(patient, (lay.height, lay.width))
    col = _lens_layer(ps, s, patient)
    rp = patient.pupil_radius * s.pupil_scale
    col *= (0.78 + 0.22 * (1 - smoothstep(0.6, 1.0, ps.r / rp)))[..., None]
    layer = np.clip(col + 0.5, 0, 255).astype(np.uint8)
    _capsule_lines(layer, lay, patient, s, ps.box)
    mask = np.clip(rp * lay.radius - ps.r * lay.radius + 0.5, 0.0, 1.0)
    x0, y0, x1, y1 = ps.box
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (roi + (layer - roi) * mask[..., None] + 0.5).astype(np.uint8)
    ruff = px(0.022 * lay.radius)
    translucent(canvas, ps.box, 0.75, lambda im, o: cv2.circle(
        im, fp((lay.cx, lay.cy), o), int(round(rp * lay.radius * (1 << SHIFT))), (52, 32, 24), ruff, AA, SHIFT))
    return rp * lay.radius
