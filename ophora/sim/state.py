"""What the surgery has done to the eye so far, as a pure function of (phase, operation, progress).

The state accumulates: :func:`eye_state` replays every earlier phase to its end and then the current phase up
to ``op_progress``, so a phase clip can be rendered on its own and still shows what earlier phases left
(wounds, the rhexis edge, the missing nucleus, the IOL). Fractions are 0..1; positions are in units of the
limbus radius R; the IOL position is given along (``iol_shift[0]``) and across (``iol_shift[1]``) the main
incision's direction from the eye centre; angles are radians.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ophora.sim.phases import phases


@dataclass(frozen=True)
class EyeState:
    """Visible state of the eye at one instant (see the module docstring for units)."""

    main_wound: float = 0.0      # length of the main corneal incision drawn so far
    side_wound: float = 0.0      # length of the side-port incision drawn so far
    gel: float = 0.0             # viscoelastic filling the anterior chamber
    gel_front: float = 0.0       # visibility of the gel's moving front (while it fills or is aspirated)
    puncture: float = 0.0        # cystotome puncture flap in the anterior capsule
    rhexis: float = 0.0          # fraction of the capsulorhexis circle torn
    wave: float = -1.0           # hydrodissection wave position across the pupil; < 0: no wave
    nucleus_rot: float = 0.0     # rotation of the nucleus (radians)
    grooves: float = 0.0         # sculpted grooves: 0..1 first groove, 1..2 crossing groove
    nucleus: float = 1.0         # fraction of the nucleus left (four quadrants)
    cortex: float = 1.0          # residual cortex
    plaque: float = 1.0          # residual posterior-capsule plaque
    iol: float = 0.0             # how far the IOL has come out of the injector (0: no IOL)
    iol_unfold: float = 0.0      # 0 folded .. 1 open
    iol_depth: float = 0.0       # 0 in the anterior chamber .. 1 in the capsular bag, behind the iris
    iol_shift: tuple[float, float] = (0.0, 0.0)
    iol_rot: float = 0.0         # haptic orientation relative to the main incision (radians)
    hydration: float = 0.0       # stromal whitening at the main wound
    pupil_scale: float = 1.0     # pupil radius relative to the patient's dilated pupil


def _ramp(p: float, a: float = 0.0, b: float = 1.0) -> float:
    t = min(max((p - a) / (b - a), 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _incision(s, op, p):
    return replace(s, main_wound=_ramp(p, 0.25, 0.6)) if op == 0 else replace(s, side_wound=_ramp(p, 0.25, 0.6))


def _viscoelastic(s, op, p):
    return replace(s, gel=_ramp(p, 0.05, 0.9), gel_front=1.0 - _ramp(p, 0.85, 1.0))


def _capsulorhexis(s, op, p):
    if op == 0:
        return replace(s, puncture=_ramp(p, 0.25, 0.6))
    return replace(s, puncture=1.0, rhexis=_ramp(p, 0.08, 0.95))


def _hydrodissection(s, op, p):
    if op == 0:
        return replace(s, wave=p)
    return replace(s, wave=-1.0, nucleus_rot=0.5 * np.pi * _ramp(p, 0.1, 0.9))


def _phaco(s, op, p):
    if op == 0:
        return replace(s, grooves=2.0 * _ramp(p, 0.05, 0.95), gel=1.0 - 0.3 * p)
    return replace(s, grooves=2.0, nucleus=1.0 - _ramp(p, 0.05, 0.95), gel=0.7 - 0.3 * p)


def _irrigation_aspiration(s, op, p):
    return replace(s, cortex=1.0 - _ramp(p, 0.08, 0.92), gel=0.4 * (1 - p))


def _polishing(s, op, p):
    return replace(s, plaque=1.0 - _ramp(p, 0.05, 0.95), gel=0.0)


def _implantation(s, op, p):
    if op == 0:
        return replace(s, gel=1.0, iol=_ramp(p, 0.15, 0.95), iol_shift=(0.9 - 0.45 * _ramp(p, 0.15, 0.95), 0.0))
    return replace(s, gel=1.0, iol=1.0, iol_unfold=_ramp(p, 0.0, 0.7), iol_depth=_ramp(p, 0.5, 1.0),
                   iol_shift=(0.45 - 0.25 * _ramp(p, 0.1, 0.9), 0.12 * _ramp(p, 0.1, 0.9)),
                   iol_rot=0.5 * _ramp(p, 0.1, 0.9))


def _positioning(s, op, p):
    t = _ramp(p, 0.05, 0.95)
    return replace(s, iol_shift=(0.2 * (1 - t), 0.12 * (1 - t)), iol_rot=0.5 + 1.1 * t)


def _viscoelastic_suction(s, op, p):
    return replace(s, gel=1.0 - _ramp(p, 0.05, 0.9), gel_front=1.0 - _ramp(p, 0.85, 1.0))


def _flushing(s, op, p):
    return s if op == 0 else replace(s, hydration=_ramp(p, 0.1, 0.85))


def _tonifying(s, op, p):
    return replace(s, pupil_scale=1.0 - 0.42 * _ramp((op + p) / 2.0, 0.05, 0.8))


_PHASE_STEPS = (_incision, _viscoelastic, _capsulorhexis, _hydrodissection, _phaco, _irrigation_aspiration,
                _polishing, _implantation, _positioning, _viscoelastic_suction, _flushing, _tonifying)


def eye_state(phase_id: int, op_index: int = 0, op_progress: float = 0.0) -> EyeState:
    """State of the eye during operation ``op_index`` of phase ``phase_id`` at ``op_progress`` (0..1)."""
    if not 0 <= phase_id < len(_PHASE_STEPS):
        raise ValueError(f"phase_id must be in 0..{len(_PHASE_STEPS) - 1}, got {phase_id}")
    return _PHASE_STEPS[phase_id](_start_of(phase_id, op_index), op_index, float(op_progress))


@lru_cache(maxsize=64)
def _start_of(phase_id: int, op_index: int) -> EyeState:
    """State at the start of operation ``op_index`` of phase ``phase_id`` (all earlier steps replayed)."""
    if op_index > 0:
        return _PHASE_STEPS[phase_id](_start_of(phase_id, op_index - 1), op_index - 1, 1.0)
    if phase_id == 0:
        return EyeState()
    last_op = len(phases()[phase_id - 1].operations) - 1
    return _PHASE_STEPS[phase_id - 1](_start_of(phase_id - 1, last_op), last_op, 1.0)
