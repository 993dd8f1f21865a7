"""The static part of the microscope view, drawn once per (patient, frame size) and reused for every frame.

Scene coordinates: pixels of an H x W frame, right-eye layout (left eyes are mirrored by the camera). The eye
centre is ``Layout.cx, cy`` and the limbus radius ``Layout.radius`` ("R"); every anatomical size is a multiple
of R, so all frame sizes look proportionally the same. The static image holds the drape, lids and speculum,
the sclera with its conjunctival vessels, the limbus and the full iris disk (the pupil is drawn per frame on
top, so that it can constrict).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ophora.sim.draw import AA, SHIFT, fp, lowfreq_noise, periodic_noise, px, smoothstep
from ophora.sim.patient import Patient


@dataclass(frozen=True)
class Layout:
    """Eye geometry in scene pixels: centre (cx, cy), limbus radius R, wound angles in radians."""

    height: int
    width: int
    cx: float
    cy: float
    radius: float
    main_angle: float
    side_angle: float

    def to_px(self, xy) -> np.ndarray:
        """Eye-relative points [..., 2] in units of R -> scene pixels [..., 2]."""
        return np.asarray(xy, dtype=np.float64) * self.radius + (self.cx, self.cy)

    def port(self, which: str) -> np.ndarray:
        """Unit vector from the eye centre to the ``"main"`` or ``"side"`` wound."""
        a = self.main_angle if which == "main" else self.side_angle
        return np.array([np.cos(a), np.sin(a)])


def make_layout(patient: Patient, size: tuple[int, int]) -> Layout:
    """Place ``patient``'s eye in an H x W frame (size = (H, W))."""
    h, w = size
    s = min(h, w)
    return Layout(h, w, w / 2 + patient.eye_offset[0] * s, h / 2 + patient.eye_offset[1] * s,
                  patient.eye_radius * s, np.deg2rad(patient.main_incision_deg), np.deg2rad(patient.side_port_deg))


def _grid(lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Eye-relative coordinates X, Y float32 [H, W] in units of R."""
    x = (np.arange(lay.width, dtype=np.float32) - lay.cx) / lay.radius
    y = (np.arange(lay.height, dtype=np.float32) - lay.cy) / lay.radius
    return np.meshgrid(x, y)


def _surround(p: Patient, lay: Layout, X, Y, g: np.random.Generator) -> np.ndarray:
    """Sclera, lid margin and drape: float32 [H, W, 3] in 0..255."""
    ax, ay = p.aperture
    rr = np.sqrt(X * X + Y * Y)
    e = np.sqrt((X / ax) ** 2 + (Y / ay) ** 2)
    shape = (lay.height, lay.width)
    globe = np.clip((rr - 1.0) / (ax - 1.0), 0.0, 1.0)
    blotch = lowfreq_noise(g, (6, 8), shape)
    shade = (1.04 - 0.30 * globe**1.5 + 0.03 * blotch)[..., None]
    red = ((p.vessel_density - 0.4) * 0.5 * globe**2 + 0.05 * (blotch + 1.0))[..., None]
    sclera = (np.array(p.sclera_rgb, np.float32) * (1 - red) + np.array((204, 124, 100), np.float32) * red) * shade
    lid = np.array((134, 76, 56), np.float32) * (0.8 + 0.15 * lowfreq_noise(g, (4, 12), shape))[..., None]
    folds = lowfreq_noise(g, (5, 7), shape) + 0.5 * lowfreq_noise(g, (11, 15), shape)
    drape = np.array(p.drape_rgb, np.float32) * (0.8 + 0.25 * folds)[..., None]
    t_lid = smoothstep(0.97, 1.01, e)[..., None]
    t_drape = smoothstep(1.10, 1.18, e)[..., None]
    return (sclera * (1 - t_lid) + lid * t_lid) * (1 - t_drape) + drape * t_drape


def _vessel_walk(g, start, direction, width, depth, out) -> None:
    """Append (points [N, 2] in R units, width in R) of one tortuous vessel and its branches to ``out``."""
    pts, pos, ang = [start], np.array(start, float), float(direction)
    stop = 1.06 + g.uniform(0.0, 0.35)
    for _ in range(40):
        ang += g.normal(0.0, 0.35)
        to_centre = np.arctan2(-pos[1], -pos[0])
        ang += 0.25 * np.angle(np.exp(1j * (to_centre - ang)))
        pos = pos + 0.07 * np.array([np.cos(ang), np.sin(ang)])
        pts.append(pos.copy())
        if np.hypot(*pos) < stop:
            break
        if depth < 2 and g.random() < 0.16:
            _vessel_walk(g, pos.copy(), ang + g.choice([-1, 1]) * g.uniform(0.5, 1.1), width * 0.6, depth + 1, out)
    out.append((np.array(pts), width))


def _vessels(p: Patient, lay: Layout, rr, g: np.random.Generator) -> np.ndarray:
    """Conjunctival vessel opacity float32 [H, W] in 0..1, fading towards the limbus."""
    walks: list = []
    ax, ay = p.aperture
    for _ in range(int(34 * p.vessel_density)):
        phi = g.uniform(0, 2 * np.pi)
        start = (ax * np.cos(phi) * 1.02, ay * np.sin(phi) * 1.02)
        _vessel_walk(g, start, phi + np.pi + g.normal(0, 0.3), g.uniform(0.008, 0.02), 0, walks)
    for _ in range(int(30 * p.vessel_density)):  # fine capillaries starting anywhere on the globe
        phi, rad = g.uniform(0, 2 * np.pi), g.uniform(1.15, 1.0 + 0.9 * (min(ax, ay * 1.3) - 1.0))
        start = (rad * np.cos(phi) * ax / ay * 0.8, rad * np.sin(phi))
        _vessel_walk(g, start, phi + np.pi + g.normal(0, 0.8), g.uniform(0.004, 0.009), 1, walks)
    mask = np.zeros((lay.height, lay.width), np.uint8)
    for pts, width in walks:
        w_px = width * lay.radius
        value = int(255 * min(1.0, (0.25 + 0.5 * w_px) * g.uniform(0.5, 1.0)))
        cv2.polylines(mask, [fp(lay.to_px(pts))], False, value, px(w_px), AA, SHIFT)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.006 * lay.radius))
    return mask.astype(np.float32) / 255.0 * smoothstep(1.04, 1.3, rr)


def _iris_colour(p: Patient, rho, noise, fine) -> np.ndarray:
    """Iris stroma colour float32 [A, N, 3] from fibre noise; rho [1, N] radius in R units."""
    base = np.array(p.iris_rgb, np.float32)
    light = np.array(p.iris_light_rgb, np.float32)
    fib = 0.65 * noise + 0.35 * fine
    col = base * (1.0 + 0.28 * fib)[..., None]
    col = col + (light - col) * (0.45 * np.clip(fine - 0.3, 0, 1.5))[..., None]
    return col


def _iris_polar(p: Patient, radius: float, g: np.random.Generator) -> np.ndarray:
    """Iris + limbus texture in polar form: float32 [A angles, N radii, 4] (RGB 0..255, alpha 0..1).

    Radii run linearly from 0 to 1.15 R along axis 1, angles from 0 to 2 pi along axis 0.
    """
    n_ang = int(np.clip(2 * np.pi * radius * 1.3, 256, 1600))
    n_rad = max(32, int(1.15 * radius))
    rho = np.linspace(0.0, 1.15, n_rad, dtype=np.float32)[None, :]
    coarse = cv2.resize(periodic_noise(g, n_ang, 5, 90, 0.4), (n_rad, n_ang), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(periodic_noise(g, n_ang, 9, 220, 0.15), (n_rad, n_ang), interpolation=cv2.INTER_CUBIC)
    collar_wave = periodic_noise(g, n_ang, 1, 14, 1.0)
    col = _iris_colour(p, rho, coarse, fine)
    pr = p.pupil_radius
    rho_c = pr + 0.26 * (1 - pr) + 0.022 * collar_wave
    collar = np.exp(-(((rho - rho_c) / 0.03) ** 2))
    inner = (rho < rho_c).astype(np.float32) * smoothstep(0.0, pr, rho)
    light = np.array(p.iris_light_rgb, np.float32)
    warm = np.array((1.1, 0.85, 0.62), np.float32) if p.iris_color in ("hazel", "green") else np.float32(0.85)
    col = col * (1 + (warm - 1) * inner[..., None])
    col = col + (light - col) * (0.5 * collar)[..., None]
    col *= _crypts(g, n_ang, n_rad, rho_c)[..., None]
    col *= (1.0 - 0.5 * smoothstep(0.78, 1.0, rho))[..., None]
    limbus = np.array((70, 72, 82), np.float32)
    col = col + (limbus - col) * smoothstep(0.975, 1.005, rho)[..., None]
    alpha = np.broadcast_to(1.0 - smoothstep(1.0, 1.07, rho), col.shape[:2])
    return np.dstack([col, alpha]).astype(np.float32)


def _unwrap(polar: np.ndarray, X, Y) -> np.ndarray:
    """Polar texture [A, N, C] (angles 0..2 pi, radii 0..1.15 R) sampled at eye coordinates X, Y [H, W]."""
    n_ang, n_rad = polar.shape[:2]
    wrapped = np.concatenate([polar, polar[:1]], axis=0)  # so that interpolation wraps around 2 pi
    rows = (np.arctan2(Y, X) % (2 * np.pi)) * np.float32(n_ang / (2 * np.pi))
    cols = np.sqrt(X * X + Y * Y) * np.float32((n_rad - 1) / 1.15)
    return cv2.remap(wrapped, cols.astype(np.float32), rows.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _crypts(g: np.random.Generator, n_ang: int, n_rad: int, rho_c) -> np.ndarray:
    """Multiplicative shading float32 [A, N] with dark crypts and circumferential furrows."""
    mask = np.zeros((n_ang, n_rad), np.uint8)
    scale_r = n_rad / 1.15
    for _ in range(int(g.integers(25, 45))):
        row = g.uniform(0, n_ang)
        r0 = float(np.clip(g.uniform(0.05, 0.3) + float(np.median(rho_c)), 0, 0.92))
        axes = (g.uniform(0.02, 0.06) * scale_r, g.uniform(0.004, 0.012) * n_ang)
        cv2.ellipse(mask, fp((r0 * scale_r, row)), fp(axes), 0, 0, 360, 160, -1, AA, SHIFT)
    for _ in range(int(g.integers(4, 9))):
        r0, row, length = g.uniform(0.8, 0.94) * scale_r, g.uniform(0, n_ang), g.uniform(0.05, 0.2) * n_ang
        cv2.line(mask, fp((r0, row)), fp((r0, row + length)), 120, px(0.012 * scale_r), AA, SHIFT)
    return 1.0 - 0.55 * mask.astype(np.float32) / 255.0


def _wet_glints(img: np.ndarray, p: Patient, lay: Layout, g: np.random.Generator) -> None:
    """The wet tear meniscus along the lid margin and specular glints of the wet conjunctiva."""
    ax, ay = p.aperture
    layer = img.copy()
    centre, axes = fp((lay.cx, lay.cy)), fp((ax * 0.99 * lay.radius, ay * 0.99 * lay.radius))
    cv2.ellipse(layer, centre, axes, 0, 0, 360, (240, 222, 212), px(0.01 * lay.radius), AA, SHIFT)
    for _ in range(int(g.integers(6, 12))):
        t, r = g.uniform(0, 2 * np.pi), g.uniform(1.12, 1.6)
        c = lay.to_px((r * np.cos(t) * ax / 2.0, r * np.sin(t) * ay / 1.5))
        size = fp((g.uniform(0.02, 0.07) * lay.radius, g.uniform(0.008, 0.02) * lay.radius))
        cv2.ellipse(layer, fp(c), size, np.rad2deg(t) + 90 + g.normal(0, 20), 0, 360, (255, 255, 255), -1, AA, SHIFT)
    cv2.addWeighted(layer, 0.6, img, 0.4, 0.0, dst=img)


def _speculum(img: np.ndarray, p: Patient, lay: Layout) -> None:
    """Wire lid speculum: two steel arcs along the upper and lower lid with wires to the frame edge."""
    ax, ay = p.aperture
    centre = fp((lay.cx, lay.cy))
    axes = fp((ax * 1.1 * lay.radius, ay * 1.1 * lay.radius))
    thick = px(0.07 * lay.radius)
    far = 3.0 * max(lay.height, lay.width)
    for start, end in ((200, 340), (20, 160)):
        for colour, t in (((60, 62, 66), thick + 2), ((150, 152, 158), thick), ((225, 228, 232), px(thick / 3))):
            cv2.ellipse(img, centre, axes, 0, start, end, colour, t, AA, SHIFT)
        for a in (start, end):
            end_pt = lay.to_px((ax * 1.1 * np.cos(np.deg2rad(a)), ay * 1.1 * np.sin(np.deg2rad(a))))
            tip = end_pt + far * np.array([np.sign(np.cos(np.deg2rad(a))), 0.15 * np.sign(np.sin(np.deg2rad(a)))])
            cv2.line(img, fp(end_pt), fp(tip), (60, 62, 66), thick + 1, AA, SHIFT)
            cv2.line(img, fp(end_pt), fp(tip), (160, 162, 168), max(1, thick - 1), AA, SHIFT)


@lru_cache(maxsize=16)
def static_eye(patient: Patient, size: tuple[int, int]) -> tuple[Layout, np.ndarray]:
    """The patient's static scene for an (H, W) frame: (layout, image uint8 [H, W, 3] RGB, read-only)."""
    lay = make_layout(patient, tuple(size))
    g = np.random.default_rng(patient.texture_seed)
    X, Y = _grid(lay)
    rr = np.sqrt(X * X + Y * Y)
    col = _surround(patient, lay, X, Y, g)
    inside = 1.0 - smoothstep(0.97, 1.01, np.sqrt((X / patient.aperture[0]) ** 2 + (Y / patient.aperture[1]) ** 2))
    vessel = (0.7 * _vessels(patient, lay, rr, g) * inside)[..., None]
    col = col + (np.array((166, 44, 30), np.float32) - col) * vessel
    iris = _unwrap(_iris_polar(patient, lay.radius, g), X, Y)
    alpha = iris[..., 3:4] * (rr < 1.13)[..., None]
    col = col + (iris[..., :3] - col) * alpha
    img = np.clip(col + 0.5, 0, 255).astype(np.uint8)
    _wet_glints(img, patient, lay, g)
    _speculum(img, patient, lay)
    img = cv2.GaussianBlur(img, (0, 0), max(0.3, 0.0025 * min(size)))  # optics: nothing is vector-sharp
    img.setflags(write=False)
    return lay, img
