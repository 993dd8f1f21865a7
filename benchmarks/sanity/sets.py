"""Degraded sets written as generated-video folders (``manifest.jsonl`` with prompts), one per strength.

A set is built in a temporary folder and renamed into place (:func:`ophora.data.atomic.atomic_dir`), with
``set.json`` recording what was changed; a finished folder is never rebuilt, so a killed run resumes. Unchanged
clips are hard links to the real files (copies where links fail); changed clips are encoded with ``crf``
(0: lossless, so only the degradation changes the pixels), except clips re-rendered by OphSim, which are encoded
as the world encoded its own.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.sanity.config import SanityError
from benchmarks.sanity.degrade import DEGRADATIONS, chosen_clips
from benchmarks.sanity.real import RealClip, RealSet
from ophora.data.atomic import atomic_dir
from ophora.data.manifests import MANIFEST_NAME, GeneratedVideo, append_generated
from ophora.data.video import probe, read_video, write_video
from ophora.seeding import rng
from ophora.sim.phases import phases
from ophora.sim.render import render_phase
from ophora.sim.world import plan_cases

__all__ = ["SetContext", "write_half", "build_set", "set_done", "foreign_instrument", "collapse_onto",
           "FOREIGN_INSTRUMENTS"]

FOREIGN_INSTRUMENTS = ("iol_injector", "phaco_tip", "keratome")  # the first one a phase does not use is drawn


@dataclass(frozen=True)
class SetContext:
    """What every set of one run shares: the real set, half B (what is degraded), seed, crf, collapse phases."""

    real: RealSet
    half: tuple[RealClip, ...]
    seed: int
    crf: int = 0
    collapse_phases: int = 2


def set_done(folder: Path) -> bool:
    return (Path(folder) / MANIFEST_NAME).is_file() and (Path(folder) / "set.json").is_file()


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _record(index: int, clip: RealClip, prompt: str | None, generator: str, settings: dict) -> GeneratedVideo:
    return GeneratedVideo(Path("videos") / f"{index:04d}.mp4", prompt or "", 0, generator, "real",
                          {"source": clip.key, "phase": clip.phase, **settings})


def write_half(folder: Path, clips: list[RealClip] | tuple[RealClip, ...], name: str) -> Path:
    """A generated-video folder of real ``clips`` (hard links), their prompts and labels; skipped when done."""
    folder = Path(folder)
    if set_done(folder):
        return folder
    with atomic_dir(folder) as tmp:
        for i, clip in enumerate(clips):
            _link(clip.path, tmp / "videos" / f"{i:04d}.mp4")
            append_generated(tmp, _record(i, clip, clip.prompt, "real", {"half": name}))
        (tmp / "set.json").write_text(json.dumps({"half": name, "clips": [c.key for c in clips]}, indent=1))
    return folder


def build_set(folder: Path, name: str, strength: float, ctx: SetContext) -> Path:
    """Write degradation ``name`` of half B at ``strength`` into ``folder`` (nothing when it is done)."""
    folder = Path(folder)
    if set_done(folder):
        return folder
    builder = _BUILDERS.get(name, _frames_set)
    with atomic_dir(folder) as tmp:
        changed = builder(tmp, name, strength, ctx)
        (tmp / "set.json").write_text(json.dumps({"degradation": name, "strength": strength, "seed": ctx.seed,
                                                  "changed": changed}, indent=1))
    return folder


def _write(tmp: Path, index: int, clip: RealClip, frames: np.ndarray, crf: int, prompt: str | None,
           generator: str, settings: dict) -> None:
    write_video(tmp / "videos" / f"{index:04d}.mp4", frames, probe(clip.path).fps, crf=crf)
    append_generated(tmp, _record(index, clip, prompt, generator, settings))


def _keep(tmp: Path, index: int, clip: RealClip, prompt: str | None, generator: str, settings: dict) -> None:
    _link(clip.path, tmp / "videos" / f"{index:04d}.mp4")
    append_generated(tmp, _record(index, clip, prompt, generator, settings))


def _frames_set(tmp: Path, name: str, strength: float, ctx: SetContext) -> list[int]:
    """Every clip through the degradation's frame function (its randomness seeded per clip)."""
    apply = DEGRADATIONS[name].apply
    settings = {"degradation": name, "strength": strength}
    for i, clip in enumerate(ctx.half):
        frames = apply(read_video(clip.path), strength, rng(ctx.seed, "sanity", name, clip.key))
        _write(tmp, i, clip, frames, ctx.crf, clip.prompt, f"sanity:{name}", settings)
    return list(range(len(ctx.half)))


def _replace_some(tmp: Path, name: str, strength: float, ctx: SetContext, eligible: list[int],
                  change: Callable[[Path, int, int, RealClip, dict], None]) -> list[int]:
    """Change the chosen clips among ``eligible`` positions with ``change(tmp, index, rank, clip, settings)``;
    keep the others. Returns the changed positions."""
    chosen = {eligible[k]: rank for rank, k in enumerate(chosen_clips(len(eligible), strength, ctx.seed, name))}
    settings = {"degradation": name, "strength": strength}
    for i, clip in enumerate(ctx.half):
        if i in chosen:
            change(tmp, i, chosen[i], clip, {**settings, "changed": True})
        else:
            _keep(tmp, i, clip, clip.prompt, f"sanity:{name}", {**settings, "changed": False})
    return sorted(chosen)


def _reverse_set(tmp: Path, name: str, strength: float, ctx: SetContext) -> list[int]:
    def change(tmp, i, rank, clip, settings):
        _write(tmp, i, clip, read_video(clip.path)[::-1], ctx.crf, clip.prompt, f"sanity:{name}", settings)

    return _replace_some(tmp, name, strength, ctx, list(range(len(ctx.half))), change)


def collapse_onto(half: tuple[RealClip, ...], count: int, seed: int) -> list[int]:
    """The ``count`` phases that mode-collapse sets collapse onto: the first of a seeded order of half's phases."""
    present = sorted({c.phase for c in half if c.phase is not None})
    order = rng(seed, "sanity", "mode_collapse", "phases").permutation(len(present))
    return sorted(present[i] for i in order[:count])


def _mode_collapse_set(tmp: Path, name: str, strength: float, ctx: SetContext) -> list[int]:
    """A fraction of the clips of other phases replaced by (linked) clips of the collapse phases, cycling
    through them; each replaced clip keeps its prompt (what the model was asked for)."""
    targets = collapse_onto(ctx.half, ctx.collapse_phases, ctx.seed)
    donors = [c for c in ctx.half if c.phase in targets]
    eligible = [i for i, c in enumerate(ctx.half) if c.phase not in targets]

    def change(tmp, i, rank, clip, settings):
        donor = donors[rank % len(donors)]
        _link(donor.path, tmp / "videos" / f"{i:04d}.mp4")
        append_generated(tmp, _record(i, clip, clip.prompt, f"sanity:{name}",
                                      {**settings, "donor": donor.key, "donor_phase": donor.phase}))

    return _replace_some(tmp, name, strength, ctx, eligible, change)


def foreign_instrument(phase_id: int) -> str:
    """An instrument that phase ``phase_id`` never uses (the first of :data:`FOREIGN_INSTRUMENTS`)."""
    own = {op.instrument for op in phases()[phase_id].operations}
    return next(name for name in FOREIGN_INSTRUMENTS if name not in own)


def _wrong_instrument_set(tmp: Path, name: str, strength: float, ctx: SetContext) -> list[int]:
    """A fraction of the clips re-rendered by OphSim exactly as the world rendered them, but with an
    instrument that does not belong to their phase."""
    world = ctx.real.world_config
    patients = {case.source_id: case.patient for case in plan_cases(world)}

    def change(tmp, i, rank, clip, settings):
        instrument = foreign_instrument(clip.phase)
        frames, _ = render_phase(patients[clip.group], clip.phase, world.frames, world.size, world.seed,
                                 instrument=instrument)
        _write(tmp, i, clip, frames, world.crf, clip.prompt, f"sanity:{name}", {**settings, "instrument": instrument})

    return _replace_some(tmp, name, strength, ctx, list(range(len(ctx.half))), change)


def _other_phase_prompt(clip: RealClip, half: tuple[RealClip, ...], g: np.random.Generator) -> RealClip:
    """A clip of another phase, from the same surgery where there is one."""
    others = [c for c in half if c.phase != clip.phase and c.group == clip.group] \
        or [c for c in half if c.phase != clip.phase]
    if not others:
        raise SanityError("wrong_phase_prompt needs clips of at least two phases in the degraded half")
    return others[int(g.integers(len(others)))]


def _wrong_prompt_set(tmp: Path, name: str, strength: float, ctx: SetContext) -> list[int]:
    """The real clips, a fraction of them with the prompt of a clip of another phase."""
    def change(tmp, i, rank, clip, settings):
        other = _other_phase_prompt(clip, ctx.half, rng(ctx.seed, "sanity", name, clip.key))
        _keep(tmp, i, clip, other.prompt, f"sanity:{name}",
              {**settings, "prompt_of": other.key, "prompt_phase": other.phase})

    return _replace_some(tmp, name, strength, ctx, list(range(len(ctx.half))), change)


_BUILDERS = {"reverse": _reverse_set, "mode_collapse": _mode_collapse_set, "wrong_instrument": _wrong_instrument_set,
             "wrong_phase_prompt": _wrong_prompt_set}
