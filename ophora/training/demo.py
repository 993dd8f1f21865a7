"""A tiny-preset demo on an OphSim world: the data both stages train on, built once per folder.

``demo_data(root)`` writes (or reuses) an OphSim world with planted defects, the tiny base model, the TPT data
(every instruction clip) and the P2FT data (the instruction set minus clips whose raw version carries subtitles
or a watermark, read from the world's ground-truth ``defects.csv``: what ``python -m ophora.curate``'s privacy
stage detects). Tests and benchmarks share it; the README runs the same steps with the command-line tools.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ophora.configs import load_preset
from ophora.data import manifests
from ophora.model import base_model_dir
from ophora.sim.world import WorldConfig, build_world
from ophora.training.prepare import prepare

__all__ = ["DemoData", "demo_data", "privacy_filtered"]


@dataclass(frozen=True)
class DemoData:
    world: Path
    base: Path
    tpt_manifest: Path
    p2ft_manifest: Path
    tpt_data: Path
    p2ft_data: Path


def privacy_filtered(instructions: Path, defects: Path) -> list:
    """Instruction clips whose raw clip has neither subtitles nor a watermark."""
    with open(defects, newline="") as handle:
        private = {r["clip_id"] for r in csv.DictReader(handle) if "True" in (r["subtitles"], r["watermark"])}
    return [clip for clip in manifests.read_instruction_set(instructions) if clip.clip_id not in private]


def demo_data(root: str | os.PathLike, videos: int = 1, seed: int = 0, defects: float = 0.5) -> DemoData:
    """Build the demo under ``root`` (each step is skipped when its output exists)."""
    root = Path(root)
    world = root / "world"
    if not (world / "world.json").is_file():
        build_world(WorldConfig(videos=videos, seed=seed, frames=9, size=(64, 64), defects=defects), world,
                    progress=False)
    preset = load_preset("tiny")
    base = base_model_dir(preset, root / "base_model")
    tpt_manifest = world / "ophora_instructions" / "instructions.csv"
    p2ft_manifest = world / "ophora_instructions" / "privacy_filtered.csv"
    if not p2ft_manifest.is_file():
        kept = privacy_filtered(tpt_manifest, world / "ophvl_raw" / "defects.csv")
        manifests.write_instruction_set(p2ft_manifest, kept)
    for manifest, out in ((tpt_manifest, root / "prep_tpt"), (p2ft_manifest, root / "prep_p2ft")):
        if not (out / "index.json").is_file():
            prepare(manifest, preset, out, base)
    return DemoData(world, base, tpt_manifest, p2ft_manifest, root / "prep_tpt", root / "prep_p2ft")

