"""What the surgeon's hands do in each phase: instrument tips, ports and fluid effects per frame.

A phase script maps (operation index, operation progress 0..1, eye state, clip motion) to a :class:`Script`:
the instruments (name, port, tip position) and the transient effects of that instant. Positions are
eye-relative in units of the limbus radius R; instruments enter through the main incision or the side port,
and their shafts pivot about that wound.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ophora.sim.draw import smoothstep
from ophora.sim.eye import Layout
from ophora.sim.patient import Patient
from ophora.sim.state import EyeState


@dataclass(frozen=True)
class ToolPose:
    """One instrument: ``tip`` in R units (eye-relative), ``port`` "main" | "side", ``opening`` 0..1."""

    name: str
    port: str
    tip: np.ndarray
    opening: float = 0.0


@dataclass
class Script:
    """Everything transient in one frame (positions in R units, eye-relative)."""

    tools: list[ToolPose] = field(default_factory=list)
    bubbles: list[tuple[float, float, float]] = field(default_factory=list)    # (x, y, radius)
    fragments: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, radius)
    stream: tuple | None = None   # (origin [2], direction [2], phase 0..1)
    cloud: tuple | None = None    # (centre [2], radius, opacity)
    flap: tuple | None = None     # (position [2], angle in radians)


@dataclass(frozen=True)
class Motion:
    """Per-clip motion parameters: ``t`` clip time 0..1 and ``frame`` index are set per frame."""

    phases: np.ndarray     # [8] random phases (radians)
    freqs: np.ndarray      # [8] wobble frequencies (cycles per clip)
    amp: float             # hand tremor / wandering amplitude (R units)
    alt_port: bool         # use the other port where both are plausible
    noise: np.ndarray      # [T, 16] uniforms for per-frame particles
    t: float = 0.0
    frame: int = 0


def sample_motion(g: np.random.Generator, num_frames: int) -> Motion:
    return Motion(g.uniform(0, 2 * np.pi, 8), g.uniform(0.5, 2.0, 8), float(g.uniform(0.02, 0.05)),
                  bool(g.random() < 0.35), g.random((num_frames, 16)))


def _wob(m: Motion, i: int, scale: float = 1.0) -> np.ndarray:
    """Smooth hand wander [2] (R units) from two low-frequency sinusoids of the clip time."""
    a = 2 * np.pi * m.freqs[i % 8] * m.t + m.phases[i % 8]
    b = 2 * np.pi * m.freqs[(i + 1) % 8] * m.t + m.phases[(i + 3) % 8]
    return scale * m.amp * np.array([np.sin(a), np.cos(b)])


def _inserted(lay: Layout, port: str, work_tip, ins: float) -> np.ndarray:
    """Tip between just outside the wound (ins=0) and its working position (ins=1)."""
    outside = 1.6 * lay.port(port)
    return outside + (np.asarray(work_tip, float) - outside) * ins


def _in_out(p: float, enter: bool = True, leave: bool = True, span: float = 0.14) -> float:
    """Insertion 0..1 over an operation: ramps in at the start and out at the end."""
    return (smoothstep(0, span, p) if enter else 1.0) * (1 - smoothstep(1 - span, 1, p) if leave else 1.0)


def _polar(r: float, a: float) -> np.ndarray:
    return np.array([r * np.cos(a), r * np.sin(a)])


def _incision(lay, pat, k, p, s, m):
    port, name = ("main", "keratome") if k == 0 else ("side", "side_port_blade")
    depth = 1.55 - (0.9 if k == 0 else 0.7) * smoothstep(0.05, 0.6, p) + 0.5 * smoothstep(0.75, 1.0, p)
    across = np.array([-lay.port(port)[1], lay.port(port)[0]])
    return Script([ToolPose(name, port, depth * lay.port(port) + 0.3 * _wob(m, k)[0] * across)])


def _viscoelastic(lay, pat, k, p, s, m):
    port = "side" if m.alt_port else "main"
    work = lay.port(port) * (-0.35 + 0.75 * p) + _wob(m, 0, 2.0)
    return Script([ToolPose("cannula", port, _inserted(lay, port, work, _in_out(p)))])


def _capsulorhexis(lay, pat, k, p, s, m):
    start = lay.main_angle + np.deg2rad(200.0)
    if k == 0:
        tangent = _polar(1.0, start + np.pi / 2)
        work = _polar(pat.rhexis_radius, start) + 0.06 * np.sin(2 * np.pi * 3 * p) * tangent + _wob(m, 1, 0.5)
        return Script([ToolPose("cystotome", "main", _inserted(lay, "main", work, _in_out(p)))])
    a = start + 2 * np.pi * s.rhexis
    tip = _polar(pat.rhexis_radius * (1.0 + 0.04 * np.sin(9 * a)), a) + _wob(m, 2, 0.4)
    tip = _inserted(lay, "main", tip, _in_out(p))
    opening = float(np.clip(0.5 + 0.7 * np.sin(2 * np.pi * 5 * p + m.phases[3]), 0, 1))
    flap = (tip + _polar(0.05, a + np.pi * 0.8), a) if 0.05 < s.rhexis < 0.98 else None
    return Script([ToolPose("rhexis_forceps", "main", tip, opening)], flap=flap)


def _hydrodissection(lay, pat, k, p, s, m):
    port = lay.port("main")
    across = np.array([-port[1], port[0]])
    if k == 0:
        work = -0.8 * pat.rhexis_radius * port + 0.12 * across + 0.04 * np.sin(2 * np.pi * 2 * p) * port
        tip = _inserted(lay, "main", work + _wob(m, 0, 0.3), _in_out(p, leave=False))
        return Script([ToolPose("cannula", "main", tip)], cloud=(tip, 0.06 + 0.05 * p, 0.25))
    work = _polar(0.3, lay.main_angle + np.pi * 0.75 + s.nucleus_rot) + _wob(m, 1, 0.3)
    return Script([ToolPose("cannula", "main", _inserted(lay, "main", work, _in_out(p, enter=False)))])


def _quadrant_dir(lay: Layout, s: EyeState) -> np.ndarray:
    """Direction (unit, eye-relative) of the nucleus quadrant being emulsified."""
    q = min((1.0 - s.nucleus) * 4.0, 3.99)
    sector = (np.floor(q) + 2) % 4 + 0.5 + 0.3 * (q % 1 - 0.5)
    return _polar(1.0, lay.main_angle + sector * np.pi / 2)


def _phaco(lay, pat, k, p, s, m):
    port = lay.port("main")
    ins = _in_out(p, enter=(k == 0), leave=(k == 1), span=0.1)
    if k == 0:
        stroke = 1 - abs((3 * p) % 2 - 1)
        tip = port * (0.35 - 0.65 * stroke) + _wob(m, 0, 0.3)
        chop = -0.3 * port + 0.25 * np.array([-port[1], port[0]]) + _wob(m, 2, 0.5)
    else:
        d = _quadrant_dir(lay, s)
        tip = 0.26 * d + _wob(m, 0, 0.4)
        chop = 0.42 * d + 0.12 * np.array([-d[1], d[0]]) + _wob(m, 2, 0.4)
    tip, chop = _inserted(lay, "main", tip, ins), _inserted(lay, "side", chop, ins)
    script = Script([ToolPose("phaco_tip", "main", tip), ToolPose("chopper", "side", chop)])
    u = m.noise[m.frame].reshape(-1, 2)  # per-frame uniforms, as (dx, dy) pairs
    if ins > 0.8 and s.nucleus > 0:
        script.bubbles = [(*(tip + 0.12 * (d - 0.5)), 0.012 + 0.012 * d[0]) for d in u[:3]]
        if k == 1:
            script.fragments = [(*(tip + 0.1 * (d - 0.5)), 0.02) for d in u[3:6]]
    return script


def _irrigation_aspiration(lay, pat, k, p, s, m):
    a = 2 * np.pi * s.cortex + 0.3
    work = _polar(0.43 + 0.05 * np.sin(2 * np.pi * 4 * p + m.phases[1]), a) + _wob(m, 0, 0.3)
    return Script([ToolPose("ia_tip", "main", _inserted(lay, "main", work, _in_out(p)))])


def _polishing(lay, pat, k, p, s, m):
    port = "side" if m.alt_port else "main"
    centre = _polar(0.22, 2 * np.pi * (0.6 * p) + m.phases[4])
    stroke = 0.06 * np.sin(2 * np.pi * 7 * p) * _polar(1.0, m.phases[5])
    return Script([ToolPose("polisher", port, _inserted(lay, port, centre + stroke + _wob(m, 1, 0.2), _in_out(p)))])


def _implantation(lay, pat, k, p, s, m):
    port = lay.port("main")
    if k == 0:
        tip = 1.45 * port + (0.92 - 1.45) * port * smoothstep(0.0, 0.15, p)
        return Script([ToolPose("iol_injector", "main", tip + 0.3 * _wob(m, 0), opening=p)])
    tip = 0.92 * port + 0.6 * port * smoothstep(0.45, 0.8, p)
    return Script([ToolPose("iol_injector", "main", tip + 0.3 * _wob(m, 0), opening=1.0)])


def _iol_centre(lay: Layout, s: EyeState) -> np.ndarray:
    port = lay.port("main")
    return s.iol_shift[0] * port + s.iol_shift[1] * np.array([-port[1], port[0]])


def _positioning(lay, pat, k, p, s, m):
    grip = _iol_centre(lay, s) + _polar(0.5, lay.main_angle + s.iol_rot + np.pi * 0.55)
    return Script([ToolPose("sinskey_hook", "side", _inserted(lay, "side", grip + _wob(m, 0, 0.2), _in_out(p)))])


def _viscoelastic_suction(lay, pat, k, p, s, m):
    work = _polar(0.28, 2 * np.pi * 1.3 * p + m.phases[2]) + _wob(m, 0, 0.5)
    return Script([ToolPose("ia_tip", "main", _inserted(lay, "main", work, _in_out(p)))])


def _flushing(lay, pat, k, p, s, m):
    port = lay.port("main")
    if k == 0:
        which = "side" if m.alt_port else "main"
        tip = _inserted(lay, which, 0.25 * lay.port(which) + _wob(m, 0, 0.5), _in_out(p, leave=False))
        direction = -lay.port(which) + _wob(m, 3, 3.0)
        return Script([ToolPose("cannula", which, tip)], stream=(tip, direction, (m.frame * 0.17) % 1.0))
    if m.alt_port and p < 0.2:
        return Script([ToolPose("cannula", "side", _inserted(lay, "side", 0.25 * lay.port("side"), 1 - p / 0.2))])
    tip = _inserted(lay, "main", 0.9 * port + _wob(m, 1, 0.2), _in_out(p, enter=m.alt_port))
    return Script([ToolPose("cannula", "main", tip)], cloud=(tip, 0.05 + 0.06 * s.hydration, 0.3))


def _tonifying(lay, pat, k, p, s, m):
    port = "side" if k == 0 else "main"
    tip = _inserted(lay, port, 0.3 * lay.port(port) + _wob(m, k, 0.5), _in_out(p))
    return Script([ToolPose("cannula", port, tip)], cloud=(tip, 0.05 + 0.12 * p, 0.18))


PHASE_SCRIPTS = (_incision, _viscoelastic, _capsulorhexis, _hydrodissection, _phaco, _irrigation_aspiration,
                 _polishing, _implantation, _positioning, _viscoelastic_suction, _flushing, _tonifying)


def script_for(phase_id: int, lay: Layout, patient: Patient, op_index: int, progress: float, state: EyeState,
               motion: Motion) -> Script:
    """The instruments and effects of one frame of phase ``phase_id``."""
    return PHASE_SCRIPTS[phase_id](lay, patient, op_index, progress, state, motion)


def tool_axis(lay: Layout, tool: ToolPose, tilt: float) -> np.ndarray:
    """Unit shaft direction (tip towards handle) so that the shaft passes through its wound."""
    radial = lay.port(tool.port)
    c, s_ = np.cos(tilt), np.sin(tilt)
    outward = np.array([c * radial[0] - s_ * radial[1], s_ * radial[0] + c * radial[1]])
    to_port = radial * 0.97 - tool.tip
    dist = float(np.linalg.norm(to_port))
    inside = float(np.dot(tool.tip, radial)) < 0.97
    w = smoothstep(0.08, 0.35, dist) if inside else 0.0
    axis = w * to_port / max(dist, 1e-6) + (1 - w) * outward
    return axis / np.linalg.norm(axis)
