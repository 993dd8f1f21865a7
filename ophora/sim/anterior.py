"""Things drawn in front of the iris and lens: wounds, viscoelastic, the IOL, fluid effects, corneal reflexes.

All functions draw in place into a uint8 RGB scene [H, W, 3]. Positions are eye-relative in units of the limbus
radius R (see :class:`ophora.sim.eye.Layout`); ``port`` is the unit vector towards the main incision.
"""
from __future__ import annotations

import cv2
import numpy as np

from ophora.sim.draw import AA, SHIFT, bbox, blend_masked, fp, px, translucent
from ophora.sim.eye import Layout
from ophora.sim.state import EyeState

OPTIC_RADIUS = 0.5  # of R (6 mm optic in an 11.5 mm cornea)


def _arc(im, lay: Layout, off, radius: float, angle: float, half_span: float, colour, width: float) -> None:
    """A limbus-concentric arc of ``radius`` R centred on ``angle`` (radians), ``half_span`` radians each side."""
    centre, axes = fp((lay.cx, lay.cy), off), fp((radius * lay.radius,) * 2)
    a, h = np.rad2deg(angle), np.rad2deg(half_span)
    cv2.ellipse(im, centre, axes, 0, a - h, a + h, colour, px(width * lay.radius), AA, SHIFT)


def draw_wounds(canvas: np.ndarray, lay: Layout, s: EyeState) -> None:
    """Main and side-port incisions: short dark/bright tunnel lines just inside the limbus."""
    for angle, length, span in ((lay.main_angle, s.main_wound, 0.2), (lay.side_angle, s.side_wound, 0.09)):
        if length <= 0:
            continue
        centre = lay.to_px(0.95 * np.array([np.cos(angle), np.sin(angle)]))
        box = bbox([centre], 0.35 * lay.radius, canvas.shape)

        def lines(im, off, angle=angle, half=span * length):
            _arc(im, lay, off, 0.965, angle, half, (92, 80, 78), 0.02)
            _arc(im, lay, off, 0.93, angle, half * 0.9, (246, 242, 236), 0.014)
        translucent(canvas, box, 0.65, lines)


def draw_hydration(canvas: np.ndarray, lay: Layout, s: EyeState) -> None:
    """Stromal hydration: a soft white haze spreading around the main wound."""
    if s.hydration <= 0:
        return
    centre = lay.to_px(0.95 * np.array([np.cos(lay.main_angle), np.sin(lay.main_angle)]))
    size = (0.5 + 0.5 * s.hydration) * lay.radius
    box = bbox([centre], 0.4 * size + 2, canvas.shape)
    for scale in (1.0, 0.75, 0.5):
        axes = fp((0.16 * size * scale, 0.32 * size * scale))
        translucent(canvas, box, 0.3 * s.hydration, lambda im, off, axes=axes: cv2.ellipse(
            im, fp(centre, off), axes, np.rad2deg(lay.main_angle), 0, 360, (238, 240, 242), -1, AA, SHIFT))


def draw_gel(canvas: np.ndarray, lay: Layout, s: EyeState, wobble: float) -> None:
    """Viscoelastic: a faint glossy body with a visible advancing front while the chamber is filling."""
    if s.gel <= 0.02:
        return
    port = lay.port("main")
    centre = 0.3 * (1 - s.gel) * port
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius = 0.97 * np.sqrt(s.gel) * (1 + 0.05 * np.sin(3 * theta + wobble) + 0.03 * np.sin(5 * theta - wobble))
    pts = lay.to_px(centre + radius[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1))
    box = bbox(pts, 3, canvas.shape)
    translucent(canvas, box, 0.07 * s.gel, lambda im, off: cv2.fillPoly(
        im, [fp(pts, off)], (255, 252, 246), AA, SHIFT))
    if s.gel_front > 0:
        translucent(canvas, box, 0.4 * s.gel_front, lambda im, off: cv2.polylines(
            im, [fp(pts, off)], True, (255, 250, 240), px(0.012 * lay.radius), AA, SHIFT))
    gloss = 0.82 * pts[27:37] + 0.18 * lay.to_px(centre)  # a glossy arc inside the upper-left rim
    translucent(canvas, box, 0.16 * s.gel, lambda im, off: cv2.polylines(
        im, [fp(gloss, off)], False, (255, 255, 255), px(0.03 * lay.radius), AA, SHIFT))


def _iol_points(lay: Layout, s: EyeState) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """IOL outline in px: optic [N, 2], two haptics [M, 2] each, and its centre [2]."""
    port = lay.port("main")
    across = np.array([-port[1], port[0]])
    centre = s.iol_shift[0] * port + s.iol_shift[1] * across
    ang = lay.main_angle + s.iol_rot
    major, minor = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
    squeeze = 0.25 + 0.75 * s.iol_unfold

    def place(local):  # local [N, 2] in the IOL frame (x along the injector axis)
        return lay.to_px(centre + local[:, :1] * major + squeeze * local[:, 1:] * minor)

    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    optic = place(OPTIC_RADIUS * np.stack([np.cos(t), np.sin(t)], 1))
    haptics = []
    for sign in (1, -1):
        phi = np.linspace(0, 1, 14)
        rad = OPTIC_RADIUS + 0.62 * np.sin(np.pi * phi * 0.62)
        a = sign * (np.pi / 2) + sign * (-0.35 + 2.0 * phi)
        haptics.append(place(np.stack([rad * np.cos(a), rad * np.sin(a)], 1) * (1, sign)))
    return optic, haptics, lay.to_px(centre)


def _iol_alpha(lay: Layout, box, s: EyeState, pupil_px: float) -> np.ndarray:
    """Per-pixel IOL visibility float32 [h, w]: strong in the pupil, faint behind the iris once in the bag,
    zero inside the injector (beyond the nozzle) while it is being injected."""
    x0, y0, x1, y1 = box
    X, Y = np.meshgrid(np.arange(x0, x1, dtype=np.float32) - lay.cx, np.arange(y0, y1, dtype=np.float32) - lay.cy)
    in_pupil = np.clip(pupil_px + 0.5 - np.sqrt(X * X + Y * Y), 0.0, 1.0)
    outside = 0.8 * (1 - s.iol_depth) + 0.12 * s.iol_depth
    alpha = outside + (0.9 - outside) * in_pupil
    if s.iol < 1.0:
        port = lay.port("main")
        along = (X * port[0] + Y * port[1]) / lay.radius
        alpha *= np.clip((0.92 - along) * lay.radius * 0.5, 0.0, 1.0)
    return alpha


def draw_iol(canvas: np.ndarray, lay: Layout, s: EyeState, pupil_px: float) -> None:
    """The intraocular lens: bright optic edge with a dark refractive rim, C-loop haptics, a small reflex."""
    if s.iol <= 0:
        return
    optic, haptics, centre = _iol_points(lay, s)
    box = bbox(np.concatenate([optic] + haptics), 4, canvas.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    layer = canvas[y0:y1, x0:x1].copy()
    off, w = (x0, y0), lay.radius
    cv2.fillPoly(layer, [fp(optic, off)], (255, 226, 190), AA, SHIFT)
    cv2.addWeighted(layer, 0.25, canvas[y0:y1, x0:x1], 0.75, 0.0, dst=layer)
    for hap in haptics:
        cv2.polylines(layer, [fp(hap, off)], False, (90, 84, 86), px(0.034 * w), AA, SHIFT)
        cv2.polylines(layer, [fp(hap, off)], False, (228, 232, 236), px(0.018 * w), AA, SHIFT)
    cv2.polylines(layer, [fp(optic, off)], True, (96, 60, 44), px(0.03 * w), AA, SHIFT)
    cv2.polylines(layer, [fp(optic, off)], True, (250, 246, 236), px(0.013 * w), AA, SHIFT)
    if s.iol_unfold > 0.5:
        cv2.circle(layer, fp(centre + (-0.18 * w, -0.16 * w), off), int(0.035 * w * 16) + 1, (255, 255, 255), -1, AA,
                   SHIFT)
    else:
        fold = np.array([optic[0], optic[20]])
        cv2.polylines(layer, [fp(fold, off)], False, (250, 244, 232), px(0.02 * w), AA, SHIFT)
    blend_masked(canvas, box, layer, _iol_alpha(lay, box, s, pupil_px))


def draw_corneal_reflex(canvas: np.ndarray, lay: Layout, spots) -> None:
    """Specular reflexes of the microscope light: ``spots`` [(x, y, radius)] in R units, eye-relative."""
    for x, y, r in spots:
        centre = lay.to_px((x, y))
        rad = r * lay.radius
        box = bbox([centre], 2.6 * rad + 2, canvas.shape)
        translucent(canvas, box, 0.35, lambda im, off, centre=centre, rad=rad: cv2.circle(
            im, fp(centre, off), int(2.2 * rad * 16) + 1, (255, 255, 252), -1, AA, SHIFT))
        translucent(canvas, box, 1.0, lambda im, off, centre=centre, rad=rad: cv2.circle(
            im, fp(centre, off), int(rad * 16) + 1, (255, 255, 255), -1, AA, SHIFT))


def draw_effects(canvas: np.ndarray, lay: Layout, script, lens_rgb) -> None:
    """Transient effects of a :class:`ophora.sim.choreography.Script`: bubbles, fragments, stream, cloud, flap."""
    for x, y, r in script.bubbles:
        c, rad = lay.to_px((x, y)), r * lay.radius
        translucent(canvas, bbox([c], rad + 3, canvas.shape), 0.75, lambda im, off, c=c, rad=rad: cv2.circle(
            im, fp(c, off), int(rad * 16) + 1, (245, 248, 252), 1, AA, SHIFT))
    for x, y, r in script.fragments:
        c = lay.to_px((x, y))
        translucent(canvas, bbox([c], r * lay.radius + 3, canvas.shape), 0.8, lambda im, off, c=c, r=r: cv2.circle(
            im, fp(c, off), int(r * lay.radius * 16) + 1, lens_rgb, -1, AA, SHIFT))
    if script.cloud is not None:
        centre, r, opacity = script.cloud
        c = lay.to_px(centre)
        translucent(canvas, bbox([c], r * lay.radius + 3, canvas.shape), opacity, lambda im, off: cv2.circle(
            im, fp(c, off), int(r * lay.radius * 16) + 1, (250, 250, 246), -1, AA, SHIFT))
    if script.stream is not None:
        _draw_stream(canvas, lay, *script.stream)
    if script.flap is not None:
        pos, a = script.flap
        tri = lay.to_px([pos, pos + 0.09 * np.array([np.cos(a + 2.4), np.sin(a + 2.4)]),
                         pos + 0.07 * np.array([np.cos(a - 2.0), np.sin(a - 2.0)])])
        translucent(canvas, bbox(tri, 2, canvas.shape), 0.55, lambda im, off: cv2.fillPoly(
            im, [fp(tri, off)], (250, 242, 222), AA, SHIFT))


def _draw_stream(canvas: np.ndarray, lay: Layout, origin, direction, phase: float) -> None:
    """Irrigation jet: a faint widening cone with bright streaks travelling away from the cannula tip."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    n = np.array([-d[1], d[0]])
    o = np.asarray(origin, float)
    cone = lay.to_px([o + 0.02 * n, o + 0.6 * d + 0.14 * n, o + 0.6 * d - 0.14 * n, o - 0.02 * n])
    box = bbox(cone, 3, canvas.shape)
    translucent(canvas, box, 0.2, lambda im, off: cv2.fillPoly(im, [fp(cone, off)], (255, 255, 255), AA, SHIFT))

    def streaks(im, off):
        for i in range(3):
            s = ((phase + i / 3) % 1.0) * 0.5
            w = (i - 1) * 0.05 * (0.3 + s)
            seg = lay.to_px([o + s * d + w * n, o + (s + 0.1) * d + w * n])
            cv2.polylines(im, [fp(seg, off)], False, (255, 255, 255), px(0.018 * lay.radius), AA, SHIFT)
    translucent(canvas, box, 0.6, streaks)
