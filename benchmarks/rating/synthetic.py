"""A small synthetic study to try the application and to test it: a few sets of short coloured clips (each set
drifts in its own colour, so a set is recognisable by eye but by nothing else), Ophora-160K CSVs with prompts
in two phases, and the study YAML that names them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ophora.data.atomic import atomic_write_text
from ophora.data.manifests import InstructionClip, write_instruction_set
from ophora.data.video import write_video

__all__ = ["PHASES", "write_synthetic_study"]

PHASES = ("incision", "phacoemulsification")


def _clip(seed: int, frames: int = 8, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, size=3)
    t = np.arange(frames)[:, None, None, None]
    yy, xx = np.mgrid[0:size, 0:size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2 - t[..., 0] * 0.5) ** 2 < (size / 4) ** 2)[..., None]
    return np.clip(base + disc * 60 + rng.integers(-8, 8, size=(frames, size, size, 3)), 0, 255).astype(np.uint8)


def write_synthetic_study(folder: str | Path, sets: tuple[str, ...] = ("alpha_model", "beta_model"),
                          per_phase: int = 2, raters: tuple[str, ...] = ("r1", "r2"), repeats: int = 1,
                          real: str | None = "real_clips", per_set_per_phase: int | None = None) -> Path:
    """Write the videos under ``folder/videos/<set>/`` and ``folder/study.yaml``; return the YAML's path."""
    folder = Path(folder)
    specs = []
    for index, name in enumerate(sets + ((real,) if real else ())):
        root = folder / "videos" / name
        clips = []
        for phase_index, phase in enumerate(PHASES):
            for j in range(per_phase):
                clip_id = f"{name}_{phase_index}_{j}"
                path = write_video(root / "clips" / f"{clip_id}.mp4", _clip(1000 * index + 10 * phase_index + j), 8)
                clips.append(InstructionClip(clip_id, f"Cataract surgery, {phase} phase. Clip {j} of the "
                                                      f"{phase} step.", path))
        write_instruction_set(root / "instructions.csv", clips)
        spec = {"name": name, "videos": str(root / "instructions.csv")}
        if name == real:
            spec["role"] = "real"
        specs.append(spec)
    study = {"name": "synthetic", "description": "a synthetic study of coloured clips", "seed": 7,
             "sets": specs, "raters": [{"id": r} for r in raters], "phase_pattern": r"Cataract surgery, (.+?) phase\.",
             "per_set_per_phase": per_set_per_phase, "checks": {"repeats": repeats}}
    return atomic_write_text(folder / "study.yaml", yaml.safe_dump(study, sort_keys=False))
