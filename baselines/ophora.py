"""Ophora behind the generator interface: prepare + train one stage, and generate (the CLIs' code, called
directly). A stage folder holds ``prep/`` (encoded clips; TPT on a tiny preset also builds ``prep/base_model``)
and ``run/`` (the training run; ``run/model`` is what ``generate`` takes)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ophora.configs import Preset, apply_overrides, load_preset, preset_from_dict
from ophora.generation import generate
from ophora.generation.prompts import Prompt
from ophora.model import VaeFit, base_model_dir, check_model_dir, read_model_info
from ophora.training.data import PreparedSet
from ophora.training.loop import RUN_NAME
from ophora.training.prepare import fit_clips, prepare
from ophora.training.trainer import MODEL_NAME, TrainRun, resolve_init, train

__all__ = ["OphoraGenerator"]


def _preset(preset: str | Preset, overrides: Mapping[str, Any] | None) -> Preset:
    return preset if isinstance(preset, Preset) else load_preset(preset, dict(overrides or {}))


def _state():
    """accelerate's process state (one process unless started by accelerate launch or torchrun)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


class OphoraGenerator:
    """``fit_vae_steps``: tiny presets fit their random VAE to the TPT manifest's clips first (see
    ``python -m ophora.prepare --fit-vae-steps``)."""

    name, conditional, stages = "ophora", True, ("tpt", "p2ft")
    shards_generation = True  # under accelerate launch / torchrun each process makes its share of the videos

    def __init__(self, fit_vae_steps: int = 0):
        self.fit_vae_steps = fit_vae_steps

    def _base_model(self, manifest: Path, preset: Preset, prep: Path) -> Path:
        if not preset.model.is_tiny:
            return base_model_dir(preset)
        fit = None
        if self.fit_vae_steps:
            built = (prep / "base_model" / "model_index.json").is_file()
            fit = VaeFit(None if built else fit_clips(manifest, preset), self.fit_vae_steps)
        return base_model_dir(preset, prep / "base_model", fit)

    def train(self, manifest: str | os.PathLike, out: str | os.PathLike, *, stage: str | None = None,
              preset: str | Preset = "tiny", init: str | os.PathLike | None = None,
              overrides: Mapping[str, Any] | None = None, progress: bool = False) -> Path:
        stage = stage or self.stages[0]
        if stage not in self.stages:
            raise ValueError(f"Ophora has stages {self.stages}, not {stage!r}")
        if stage == "p2ft" and init is None:
            raise ValueError("Ophora's P2FT starts from a TPT model: pass init=<the TPT model folder>")
        manifest, out, spec = Path(manifest), Path(out), _preset(preset, overrides)
        run = out / "run"
        if (run / MODEL_NAME / "model_index.json").is_file():
            return run / MODEL_NAME
        state = _state()  # under accelerate launch / torchrun every process calls train
        resume = (run / RUN_NAME).is_file()
        state.wait_for_everyone()
        if init is not None:  # a model folder or a finished run folder; P2FT's must hold a TPT model
            model_dir = check_model_dir(resolve_init(stage, Path(init), None))
        else:
            if state.is_main_process:  # builds (and fits) a tiny base model once
                self._base_model(manifest, spec, out / "prep")
            state.wait_for_everyone()
            model_dir = self._base_model(manifest, spec, out / "prep")
        prepare(manifest, spec, out / "prep", model_dir, rank=state.process_index, world=state.num_processes,
                device=state.device, progress=progress and state.is_main_process, barrier=state.wait_for_everyone)
        init_dir = model_dir if init is not None else resolve_init(stage, None, PreparedSet(out / "prep"))
        return train(TrainRun(stage, spec, out / "prep", run, init=init_dir, resume=resume, progress=progress))

    def generate(self, model: str | os.PathLike, prompts: Sequence[Prompt], out: str | os.PathLike, *,
                 videos_per_prompt: int = 1, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                 progress: bool = False) -> list[Path]:
        info = read_model_info(model)
        if info is None:
            raise ValueError(f"{model} has no ophora_model.json: not a model folder the suite wrote")
        source = str(Path(model) / "ophora_model.json")
        spec = preset_from_dict(apply_overrides(info["config"], dict(overrides or {}), source), source)
        state = _state()
        return generate(model, list(prompts), spec, out, videos_per_prompt, seed, rank=state.process_index,
                        world=state.num_processes, device=state.device, progress=progress and state.is_main_process,
                        barrier=state.wait_for_everyone)
