"""The real set of the sanity suite: its clips, their phase labels where known, and its two disjoint halves.

``--real`` may be an OphSim world folder (or its ``ophora_instructions/instructions.csv``): clips, prompts and
phase labels come from its files (``ophnet/OphSim_loca_phase.csv`` gives each surgery's phases, ``world.json``
each surgery's source id; a phase clip of the instruction set is ``<source id>_<phase id>``), and its settings
let the suite re-render a clip with another instrument. Any other set that :func:`ophora.data.sets.load_video_set`
reads (a folder of videos, a generated-video folder, an Ophora-160K CSV) has no labels: the degradations that
need them are skipped with a note.

Halves: half A is the reference, half B is what every degradation starts from, so strength 0 scores B against
A: the real-vs-real noise floor. An OphSim world is split by patient (each half holds whole surgeries, so every
phase is in both); another set clip by clip, in a seeded order.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ophora.data.sets import load_video_set
from ophora.seeding import rng
from ophora.sim.world import WorldConfig

__all__ = ["RealClip", "RealSet", "load_real", "split_halves", "find_world"]


@dataclass(frozen=True)
class RealClip:
    """One real clip: ``path`` absolute, ``key`` unique within the set, ``prompt`` or None, ``phase`` id or None,
    ``group`` the surgery it comes from (the key itself when unknown)."""

    path: Path
    key: str
    prompt: str | None
    phase: int | None
    group: str


@dataclass(frozen=True)
class RealSet:
    """The clips of ``--real`` and, for an OphSim world, its folder and settings."""

    spec: str
    clips: tuple[RealClip, ...]
    world: Path | None = None
    world_config: WorldConfig | None = None

    @property
    def has_labels(self) -> bool:
        return all(c.phase is not None for c in self.clips)

    @property
    def has_prompts(self) -> bool:
        return all(c.prompt for c in self.clips)


def find_world(spec: str | os.PathLike) -> Path | None:
    """The OphSim world folder that ``spec`` is (or whose instruction CSV it is), else None."""
    path = Path(spec).expanduser().resolve()
    for folder in (path, path.parent.parent if path.suffix.lower() == ".csv" else None):
        if folder is not None and (folder / "world.json").is_file() \
                and (folder / "ophora_instructions" / "instructions.csv").is_file():
            return folder
    return None


def load_real(spec: str | os.PathLike) -> RealSet:
    """Read ``spec`` (see the module docstring). A missing path or a set without videos raises
    FileNotFoundError naming it."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--real {spec}: no such file or folder; pass a folder of videos, a generated-video "
                                "folder, an Ophora-160K CSV or an OphSim world folder")
    world = find_world(path)
    if world is not None:
        return _ophsim_set(str(spec), world)
    video_set = load_video_set(path)
    if len(video_set) == 0:
        raise FileNotFoundError(f"--real {spec}: the set lists no videos")
    clips = tuple(RealClip(item.path, item.key, item.prompt, None, item.key) for item in video_set.items)
    return RealSet(str(spec), clips)


def _ophsim_set(spec: str, world: Path) -> RealSet:
    summary = json.loads((world / "world.json").read_text(encoding="utf-8"))
    settings = summary["config"]
    config = WorldConfig(**{**settings, "size": tuple(settings["size"])})
    source = {case: record["source_id"] for case, record in summary["patients"].items()}
    phases = pd.read_csv(world / "ophnet" / "OphSim_loca_phase.csv")
    labels = {f"{source[row.video_id]}_{int(row.phase_id)}": (int(row.phase_id), source[row.video_id])
              for row in phases.itertuples()}
    video_set = load_video_set(world / "ophora_instructions" / "instructions.csv")
    clips = []
    for item in video_set.items:
        clip_id = Path(item.key).stem
        if clip_id not in labels:
            raise FileNotFoundError(f"{world}: clip {clip_id!r} of ophora_instructions/instructions.csv has no phase "
                                    "row in ophnet/OphSim_loca_phase.csv; rebuild the world with python -m ophora.sim")
        phase, group = labels[clip_id]
        clips.append(RealClip(item.path, item.key, item.prompt, phase, group))
    if not clips:
        raise FileNotFoundError(f"--real {spec}: the OphSim world {world} lists no clips")
    return RealSet(spec, tuple(clips), world, config)


def split_halves(real: RealSet, seed: int) -> tuple[list[RealClip], list[RealClip]]:
    """Two disjoint halves (A: the reference, B: what is degraded): whole groups (surgeries) alternately after a
    seeded shuffle when there are at least two groups of equal size, else single clips in a seeded order."""
    groups: dict[str, list[RealClip]] = {}
    for clip in real.clips:
        groups.setdefault(clip.group, []).append(clip)
    sizes = {len(members) for members in groups.values()}
    if len(groups) >= 2 and len(groups) % 2 == 0 and len(sizes) == 1:
        units = list(groups.values())
    else:
        units = [[clip] for clip in real.clips]
    order = rng(seed, "sanity", "halves").permutation(len(units))
    half_a = [clip for rank, i in enumerate(order) if rank % 2 == 0 for clip in units[i]]
    half_b = [clip for rank, i in enumerate(order) if rank % 2 == 1 for clip in units[i]]
    if not half_a or not half_b:
        raise FileNotFoundError(f"--real {real.spec}: {len(real.clips)} video(s) cannot be split into two halves; "
                                "the suite needs at least 2 (and about 24 per half for useful intervals)")
    return half_a, half_b
