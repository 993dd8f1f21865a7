"""Surgical instruments of OphSim: shapes in a local frame and a metallic, anti-aliased drawing routine.

Local frame: origin at the instrument's tip, ``u`` along the shaft towards the handle, ``v`` across it, both in
units of the limbus radius R. A shape is a list of primitives: ``("tube", spine [N, 2], width, kind)`` drawn as
a shaded thick polyline, or ``("poly", points [N, 2], kind)`` drawn as a filled polygon. ``kind`` picks the
material colour from a per-clip :class:`Palette`, so that colour alone does not identify an instrument.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ophora.sim.draw import AA, SHIFT, bbox, fp, px, translucent

FAR = 4.0  # shafts run this far (R units) from the tip: beyond the frame edge


@dataclass(frozen=True)
class Palette:
    """Per-clip material colours (RGB 0..255): steel, silicone sleeve, plastic injector."""

    steel: tuple[float, float, float]
    sleeve: tuple[float, float, float]
    plastic: tuple[float, float, float]

    def colour(self, kind: str) -> tuple[float, float, float]:
        base = {"steel": self.steel, "blade": self.steel, "sleeve": self.sleeve, "plastic": self.plastic}
        if kind == "blade_dark":
            return tuple(0.72 * c for c in self.steel)
        return base[kind]


def sample_palette(g: np.random.Generator) -> Palette:
    """Steel from dull grey to bright, with a slight warm/cool tint; sleeve and plastic tints vary too."""
    level = g.uniform(150, 210)
    steel = tuple(float(level * t) for t in g.uniform(0.93, 1.07, 3))
    sleeve = tuple(float(c) for c in np.array((150, 168, 176)) * g.uniform(0.85, 1.1, 3))
    plastic = tuple(float(c) for c in np.array((178, 204, 226)) * g.uniform(0.9, 1.05, 3))
    return Palette(steel, sleeve, plastic)


def _tube(spine, width, kind="steel"):
    return ("tube", np.asarray(spine, float), float(width), kind)


def _bent_tip(length: float, bend: float, width: float, hub_at: float, hub_width: float, kind="steel"):
    """A straight shaft whose last ``length`` is bent by ``bend`` radians, with a wider hub further up."""
    b = (length * np.cos(bend), length * np.sin(bend))
    return [_tube([(0, 0), b, (FAR, b[1])], width, kind), _tube([(hub_at, b[1]), (FAR, b[1])], hub_width)]


def _keratome(opening):
    half = 0.22
    return [("poly", [(0, 0), (0.3, half), (0.5, half * 0.9), (0.5, 0)], "blade"),
            ("poly", [(0, 0), (0.3, -half), (0.5, -half * 0.9), (0.5, 0)], "blade_dark"),
            ("poly", [(0.5, half * 0.9), (0.66, 0.05), (0.66, -0.05), (0.5, -half * 0.9)], "blade_dark"),
            _tube([(0.64, 0), (FAR, 0)], 0.1), _tube([(1.8, 0), (FAR, 0)], 0.2)]


def _side_port_blade(opening):
    return [("poly", [(0, 0), (0.28, 0.075), (0.42, 0.06), (0.42, 0)], "blade"),
            ("poly", [(0, 0), (0.28, -0.075), (0.42, -0.06), (0.42, 0)], "blade_dark"),
            _tube([(0.4, 0), (FAR, 0)], 0.07), _tube([(1.6, 0), (FAR, 0)], 0.17)]


def _cannula(opening):
    return _bent_tip(0.24, 0.45, 0.05, 1.5, 0.17, "steel")


def _cystotome(opening):
    hook = _tube([(0.0, -0.07), (0.0, 0.0), (0.03, 0.02)], 0.035)
    return [hook] + _bent_tip(0.3, 0.3, 0.035, 1.5, 0.15)


def _rhexis_forceps(opening):
    arms = []
    for side in (1, -1):
        jaw = 0.012 + 0.03 * opening
        spine = [(0.0, side * jaw), (0.06, side * (jaw + 0.01)), (0.7, side * 0.05), (1.2, side * 0.04),
                 (FAR, side * 0.16)]
        arms.append(_tube(spine, 0.035))
        arms.append(_tube([(0.0, side * jaw), (0.0, side * (jaw - 0.03))], 0.03))
    return arms + [_tube([(1.7, 0.0), (FAR, 0.0)], 0.2)]


def _phaco_tip(opening):
    return [_tube([(0, 0), (0.24, 0)], 0.07), _tube([(0.18, 0), (0.95, 0)], 0.15, "sleeve"),
            ("poly", [(0.95, 0.08), (1.25, 0.14), (1.25, -0.14), (0.95, -0.08)], "sleeve"),
            _tube([(1.25, 0), (FAR, 0)], 0.28)]


def _chopper(opening):
    return [_tube([(0.0, -0.09), (0.0, 0.0), (0.14, 0.03), (FAR, 0.03)], 0.04), _tube([(1.4, 0.03), (FAR, 0.03)], 0.14)]


def _ia_tip(opening):
    return [_tube([(0, 0), (0.2, 0)], 0.08), _tube([(0.16, 0), (0.9, 0)], 0.13, "sleeve"),
            _tube([(0.9, 0), (FAR, 0)], 0.24), ("port", (0.035, 0.0), 0.02)]


def _polisher(opening):
    return [("bulb", (0.0, 0.0), 0.04)] + _bent_tip(0.26, -0.4, 0.04, 1.5, 0.16)


def _iol_injector(opening):
    return [("poly", [(0, 0.06), (0.45, 0.12), (0.8, 0.16), (FAR, 0.2), (FAR, -0.2), (0.8, -0.16), (0.45, -0.12),
                      (0, -0.06)], "plastic"), _tube([(0.5 - 0.4 * opening, 0), (FAR, 0)], 0.05, "steel")]


def _sinskey_hook(opening):
    return [_tube([(0.0, 0.07), (0.0, 0.0), (0.1, -0.02), (0.35, -0.05), (FAR, -0.05)], 0.035),
            _tube([(1.3, -0.05), (FAR, -0.05)], 0.13)]


SHAPES = {"keratome": _keratome, "side_port_blade": _side_port_blade, "cannula": _cannula, "cystotome": _cystotome,
          "rhexis_forceps": _rhexis_forceps, "phaco_tip": _phaco_tip, "chopper": _chopper, "ia_tip": _ia_tip,
          "polisher": _polisher, "iol_injector": _iol_injector, "sinskey_hook": _sinskey_hook}


def _to_px(local, tip, axis, radius) -> np.ndarray:
    """Local (u, v) points [N, 2] in R units -> scene px, given the tip (px) and the unit shaft direction."""
    local = np.asarray(local, float).reshape(-1, 2)
    normal = np.array([-axis[1], axis[0]])
    return tip + radius * (local[:, :1] * axis + local[:, 1:] * normal)


def _draw_prim(im, prim, tip, axis, radius, palette, off, shadow) -> None:
    """Draw one primitive onto ``im`` (an ROI with origin ``off``); ``shadow``: draw it flat black."""
    kind = prim[0]
    if kind in ("port", "bulb"):
        centre, rad = _to_px(prim[1], tip, axis, radius)[0], prim[2] * radius
        colour = (0, 0, 0) if shadow else ((40, 40, 44) if kind == "port" else tuple(0.9 * c for c in palette.steel))
        cv2.circle(im, fp(centre, off), int(rad * (1 << SHIFT)) + 1, colour, -1, AA, SHIFT)
        return
    pts = fp(_to_px(prim[1], tip, axis, radius), off)
    base = (0, 0, 0) if shadow else palette.colour(prim[-1])
    if kind == "poly":
        cv2.fillPoly(im, [pts], base, AA, SHIFT)
        if not shadow:
            cv2.polylines(im, [pts], True, tuple(0.45 * c for c in base), px(0.012 * radius), AA, SHIFT)
            if prim[-1] == "blade":  # bright bevel along the cutting edge
                edge = fp(_to_px(np.asarray(prim[1])[:2], tip, axis, radius), off)
                cv2.polylines(im, [edge], False, (250, 250, 250), px(0.01 * radius), AA, SHIFT)
        return
    width = prim[2] * radius
    if shadow:
        cv2.polylines(im, [pts], False, base, px(width), AA, SHIFT)
        return
    cv2.polylines(im, [pts], False, tuple(0.35 * c for c in base), px(width + max(1.0, 0.2 * width)), AA, SHIFT)
    cv2.polylines(im, [pts], False, base, px(width * 0.8), AA, SHIFT)
    spine = np.asarray(prim[1])
    shade = _to_px(spine - (0, 0.22 * prim[2]), tip, axis, radius)
    cv2.polylines(im, [fp(shade, off)], False, tuple(0.7 * c for c in base), px(width * 0.3), AA, SHIFT)
    shine = _to_px(spine + (0, 0.16 * prim[2]), tip, axis, radius)
    light = tuple(min(255.0, 1.25 * c + 60) for c in base)
    cv2.polylines(im, [fp(shine, off)], False, light, px(width * 0.2), AA, SHIFT)


def draw_instrument(canvas: np.ndarray, name: str, tip, axis, radius: float, palette: Palette,
                    opening: float = 0.0, shadow=(0.0, 0.0), alpha: float = 1.0) -> None:
    """Draw instrument ``name`` with its tip at ``tip`` (px) and shaft along unit ``axis`` into uint8 ``canvas``.

    opening: 0..1 jaw opening (forceps) or plunger travel (injector); shadow: offset (px) of a soft drop shadow.
    """
    prims = SHAPES[name](opening)
    tip, axis = np.asarray(tip, float), np.asarray(axis, float) / np.linalg.norm(axis)
    pts = np.concatenate([_to_px(p[1], tip, axis, radius) for p in prims])
    box = bbox(np.concatenate([pts, pts + shadow]), 0.3 * radius, canvas.shape)
    if box is None:
        return
    if any(shadow):
        translucent(canvas, box, 0.3, lambda im, off: [
            _draw_prim(im, p, tip + shadow, axis, radius, palette, off, True) for p in prims])
    plastic = [p for p in prims if p[-1] in ("plastic", "sleeve")]
    solid = [p for p in prims if p[-1] not in ("plastic", "sleeve")]
    translucent(canvas, box, 0.8 * alpha, lambda im, off: [
        _draw_prim(im, p, tip, axis, radius, palette, off, False) for p in plastic])
    translucent(canvas, box, alpha, lambda im, off: [
        _draw_prim(im, p, tip, axis, radius, palette, off, False) for p in solid])
