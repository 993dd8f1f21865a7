"""OphSim's renderer: deterministic clips of the surgical-microscope view of one cataract-surgery phase.

A frame is built in five steps: copy the patient's static scene (:mod:`ophora.sim.eye`), compose the pupil for
the eye state (:mod:`ophora.sim.lens`, :mod:`ophora.sim.state`), draw what lies in the anterior chamber
(:mod:`ophora.sim.anterior`), draw the instruments of the phase script (:mod:`ophora.sim.choreography`,
:mod:`ophora.sim.instruments`), and expose it through the clip's camera (:mod:`ophora.sim.camera`).
Every random choice comes from generators derived from (seed, patient, phase, clip_key), so a clip does not
depend on what was rendered before it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ophora.seeding import rng
from ophora.sim import anterior, camera, choreography
from ophora.sim.eye import Layout, static_eye
from ophora.sim.instruments import SHAPES, Palette, draw_instrument, sample_palette
from ophora.sim.lens import draw_pupil
from ophora.sim.patient import Patient
from ophora.sim.phases import Phase, phases
from ophora.sim.state import EyeState, eye_state

_FRAGMENT_RGB = (205, 180, 120)  # emulsified nucleus fragments


@dataclass(frozen=True)
class Segment:
    """One operation inside a rendered phase clip: frames [start_frame, end_frame)."""

    op_id: int
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class _Clip:
    """Everything fixed for one clip (see render_phase)."""

    patient: Patient
    layout: Layout
    scene: np.ndarray          # uint8 [H, W, 3] static scene, read-only
    cam: camera.Camera
    gains: np.ndarray          # float32 [H, W, 3]
    noise: np.ndarray          # float32 [K, H, W, 1]
    palette: Palette
    motion: choreography.Motion
    tilts: dict
    shadow: np.ndarray         # shadow offset, px
    spots: tuple               # corneal reflexes (x, y, radius), R units


def sample_segments(phase: Phase, num_frames: int, g: np.random.Generator) -> list[Segment]:
    """Split [0, num_frames) among the phase's operations in order, with random proportions; each operation gets
    at least ceil(num_frames / (4 * n_ops)) frames."""
    n = len(phase.operations)
    min_len = math.ceil(num_frames / (4 * n))
    spare = num_frames - n * min_len
    share = spare * g.dirichlet(np.full(n, 2.0))
    extra = np.floor(share).astype(int)
    extra[np.argsort(extra - share)[: spare - int(extra.sum())]] += 1
    bounds = np.concatenate([[0], np.cumsum(min_len + extra)])
    return [Segment(op.op_id, int(a), int(b)) for op, a, b in zip(phase.operations, bounds[:-1], bounds[1:])]


def _op_at(segments: list[Segment], t: int) -> tuple[int, float]:
    """(operation index, progress 0..1 at the frame's centre) of frame ``t``."""
    for k, seg in enumerate(segments):
        if seg.start_frame <= t < seg.end_frame:
            return k, (t - seg.start_frame + 0.5) / (seg.end_frame - seg.start_frame)
    raise IndexError(t)


def _make_clip(patient: Patient, phase_id: int, num_frames: int, size, seed: int, clip_key) -> _Clip:
    key = (seed, "clip", patient.patient_id, phase_id, str(clip_key))
    lay, scene = static_eye(patient, size)
    cam = camera.sample_camera(rng(*key, "camera"), patient.eye_side == "left")
    g = rng(*key, "look")
    light = g.uniform(0, 2 * np.pi)
    shadow = g.uniform(0.04, 0.08) * lay.radius * np.array([np.cos(light), np.sin(light)])
    spots = ((-0.1 + g.uniform(-0.06, 0.06), -0.16 + g.uniform(-0.06, 0.06), g.uniform(0.022, 0.034)),
             (0.05 + g.uniform(-0.04, 0.04), -0.08 + g.uniform(-0.04, 0.04), g.uniform(0.012, 0.02)))
    return _Clip(patient, lay, scene, cam, camera.gain_map(cam, size),
                 camera.noise_bank(cam, size, rng(*key, "noise")), sample_palette(g),
                 choreography.sample_motion(rng(*key, "motion"), num_frames),
                 {"main": g.uniform(-0.3, 0.3), "side": g.uniform(-0.3, 0.3)}, shadow, spots)


def render_scene(clip: _Clip, state: EyeState, script: choreography.Script, t: float) -> np.ndarray:
    """The scene (before the camera) at clip time ``t`` (0..1): uint8 [H, W, 3] RGB."""
    lay, canvas = clip.layout, clip.scene.copy()
    pupil_px = draw_pupil(canvas, lay, clip.patient, state)
    anterior.draw_wounds(canvas, lay, state)
    anterior.draw_hydration(canvas, lay, state)
    anterior.draw_gel(canvas, lay, state, float(clip.motion.phases[0] + 3.0 * t))
    anterior.draw_iol(canvas, lay, state, pupil_px)
    anterior.draw_effects(canvas, lay, script, _FRAGMENT_RGB)
    for tool in script.tools:
        axis = choreography.tool_axis(lay, tool, clip.tilts[tool.port])
        draw_instrument(canvas, tool.name, lay.to_px(tool.tip), axis, lay.radius, clip.palette, tool.opening,
                        tuple(clip.shadow))
    anterior.draw_corneal_reflex(canvas, lay, clip.spots)
    return canvas


def _check(phase_id: int, num_frames: int, size) -> Phase:
    if not 0 <= phase_id < len(phases()):
        raise ValueError(f"phase_id must be in 0..{len(phases()) - 1}, got {phase_id}")
    phase = phases()[phase_id]
    if num_frames < len(phase.operations):
        raise ValueError(f"num_frames must be >= {len(phase.operations)} (one per operation of phase "
                         f"{phase.name!r}), got {num_frames}")
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"size must be (height, width) with both >= 32 pixels, got {size}")
    return phase


def render_phase(patient: Patient, phase_id: int, num_frames: int, size: tuple[int, int], seed: int,
                 clip_key: str | int = 0, instrument: str | None = None) -> tuple[np.ndarray, list[Segment]]:
    """Render one clip of phase ``phase_id`` (0-11, see :mod:`ophora.sim.phases`) for ``patient``.

    Returns frames uint8 [T, H, W, 3] RGB (T = num_frames, size = (H, W)) and the operations' segments, which
    cover [0, T) in order. The eye starts in the state that all earlier phases leave. ``clip_key`` selects one
    of many different clips (camera, hands, illumination, segment proportions) of the same phase and patient.
    ``instrument``: draw every instrument of the clip as this one (a name of
    :data:`ophora.sim.instruments.SHAPES`; an instrument that does not belong to the phase makes a wrong clip for
    the sanity suite); None draws the phase's own, and the clip is otherwise the same.
    """
    phase = _check(phase_id, num_frames, size)
    if instrument is not None and instrument not in SHAPES:
        raise ValueError(f"unknown instrument {instrument!r}; known: {sorted(SHAPES)}")
    size = (int(size[0]), int(size[1]))
    clip = _make_clip(patient, phase_id, num_frames, size, seed, clip_key)
    segments = sample_segments(phase, num_frames, rng(seed, "clip", patient.patient_id, phase_id, str(clip_key),
                                                      "segments"))
    frames = np.empty((num_frames, *size, 3), np.uint8)
    for t in range(num_frames):
        k, progress = _op_at(segments, t)
        tc = (t + 0.5) / num_frames
        motion = replace(clip.motion, t=tc, frame=t)
        state = eye_state(phase_id, k, progress)
        script = choreography.script_for(phase_id, clip.layout, patient, k, progress, state, motion)
        if instrument is not None:
            script.tools = [replace(tool, name=instrument) for tool in script.tools]
        scene = render_scene(clip, state, script, tc)
        noise = clip.noise[(5 * t) % camera.NOISE_BANK]
        frames[t] = camera.expose(scene, camera.camera_matrix(clip.cam, tc, size), clip.gains, noise)
    return frames, segments


def render_surgery(patient: Patient, frames_per_phase: int, size: tuple[int, int],
                   seed: int) -> list[tuple[np.ndarray, list[Segment]]]:
    """All 12 phases of one surgery in order: [(frames uint8 [T, H, W, 3], segments)] per phase."""
    return [render_phase(patient, phase.phase_id, frames_per_phase, size, seed) for phase in phases()]
