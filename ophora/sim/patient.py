"""Simulated patients of OphSim: the per-eye anatomy that stays fixed through one surgery.

A :class:`Patient` is plain, hashable data (names, floats, tuples), so it can be written to JSON, compared, and
used as a cache key for the patient's static eye texture (:mod:`ophora.sim.eye`). Lengths are fractions: of the
limbus ("eye") radius for structures inside the eye, of ``min(height, width)`` of the frame for the eye's
placement. Angles are in degrees in image coordinates (x right, y down, clockwise), for a right eye; left eyes
are drawn mirrored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ophora.seeding import derive_seed, rng

IRIS_COLORS = ("brown", "hazel", "blue", "green")

# RGB base (stroma) and fibre/collarette colours per iris colour name.
_IRIS_PALETTE = {
    "brown": ((104, 60, 32), (166, 110, 66)),
    "hazel": ((126, 98, 52), (190, 156, 92)),
    "blue": ((96, 120, 146), (180, 198, 210)),
    "green": ((96, 118, 70), (170, 182, 116)),
}
_DRAPES = ((38, 78, 96), (40, 86, 66), (58, 66, 78), (34, 62, 104), (26, 38, 56), (72, 108, 136), (92, 98, 104))


@dataclass(frozen=True)
class Patient:
    """Anatomy of one simulated eye.

    pupil_radius: dilated pupil radius, fraction of the eye (limbus) radius; lens_opacity: 0 clear .. 1 dense
    cataract; brunescence: 0 grey-yellow .. 1 amber-brown nucleus; eye_radius: limbus radius as a fraction of
    min(H, W); eye_offset: (dx, dy) of the eye centre from the frame centre, same unit; rhexis_radius: fraction
    of the eye radius; main_incision_deg / side_port_deg: clock angles of the two wounds (right-eye layout);
    aperture: half-axes (x, y) of the lid opening in eye radii; *_rgb: base colours (0-255); texture_seed:
    seed of the iris texture, vessels and lens details.
    """

    patient_id: str
    iris_color: str
    pupil_radius: float
    lens_opacity: float
    eye_side: str
    brunescence: float
    eye_radius: float
    eye_offset: tuple[float, float]
    rhexis_radius: float
    main_incision_deg: float
    side_port_deg: float
    aperture: tuple[float, float]
    iris_rgb: tuple[int, int, int]
    iris_light_rgb: tuple[int, int, int]
    sclera_rgb: tuple[int, int, int]
    reflex_rgb: tuple[int, int, int]
    drape_rgb: tuple[int, int, int]
    vessel_density: float
    texture_seed: int


def _jitter_rgb(g: np.random.Generator, rgb, spread: float) -> tuple[int, int, int]:
    """``rgb`` scaled by a common brightness factor and small per-channel factors (both around 1)."""
    scale = g.uniform(1 - spread, 1 + spread) * g.uniform(1 - spread / 2, 1 + spread / 2, 3)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) * scale, 0, 255))


def sample_patient(seed: int, patient_id: str) -> Patient:
    """Draw one patient's anatomy; depends only on (``seed``, ``patient_id``)."""
    g = rng(seed, "patient", patient_id)
    iris_color = IRIS_COLORS[int(g.integers(len(IRIS_COLORS)))]
    base, light = _IRIS_PALETTE[iris_color]
    pupil = float(round(g.uniform(0.42, 0.72), 3))
    main = float(g.uniform(150.0, 215.0))
    blue = g.uniform(184, 200)
    sclera = (int(g.uniform(232, 246)), int(blue + g.uniform(18, 28)), int(blue))
    reflex = (int(g.uniform(210, 240)), int(g.uniform(70, 105)), int(g.uniform(22, 42)))
    return Patient(
        patient_id=patient_id,
        iris_color=iris_color,
        pupil_radius=pupil,
        lens_opacity=float(round(g.uniform(0.35, 0.95), 3)),
        eye_side="left" if g.random() < 0.5 else "right",
        brunescence=float(round(g.uniform(0.0, 1.0), 3)),
        eye_radius=float(g.uniform(0.26, 0.34)),
        eye_offset=(float(g.uniform(-0.09, 0.09)), float(g.uniform(-0.06, 0.06))),
        rhexis_radius=float(max(0.3, min(g.uniform(0.38, 0.45), pupil - 0.05))),
        main_incision_deg=main,
        side_port_deg=float(main + g.uniform(70.0, 100.0)),
        aperture=(float(g.uniform(1.75, 2.1)), float(g.uniform(1.3, 1.5))),
        iris_rgb=_jitter_rgb(g, base, 0.12),
        iris_light_rgb=_jitter_rgb(g, light, 0.08),
        sclera_rgb=sclera,
        reflex_rgb=reflex,
        drape_rgb=_jitter_rgb(g, _DRAPES[int(g.integers(len(_DRAPES)))], 0.2),
        vessel_density=float(g.uniform(0.6, 1.4)),
        texture_seed=derive_seed(seed, "patient", patient_id, "texture"),
    )
