"""Training checkpoints: ``RUN/checkpoints/step_NNNNNNN/``, written whole or not at all, and never a pickle.

A checkpoint folder holds exactly these files (the suite's own format, ``ophora-checkpoint/1``)::

    trainer_state.json                 step and what the trainer saved (stage, preset and fingerprint, loss kind)
    checkpoint.json                    format tag, processes, registered object names, accelerate's step counter
    model.safetensors                  the model's full state dict (``accelerator.get_state_dict``: unwrapped)
    optimizer.json + .safetensors      the optimizer's state dict: structure and hyper-parameters as JSON, tensors
    NAME.json + NAME.safetensors       each registered object's state dict (``lr_schedule``, ``ema``; ``scaler``
                                       when accelerate runs a gradient scaler)
    rng_R.json + rng_R.safetensors     process R's python, numpy, torch (and CUDA) RNG states

What a checkpoint restores is passed explicitly (:class:`Checkpointed`: the prepared model and optimizer, and
named objects with ``state_dict``/``load_state_dict``), not registered with accelerate. State dicts are split
into JSON (dicts, lists, tuples, numbers, strings) and safetensors (tensors); anything else is refused when
saving. :func:`load_checkpoint` first checks the folder's file names against the format and refuses, naming the
file, a folder that holds anything else (a ``*.pkl``, ``*.bin``, ``*.pt``, a folder) or lacks a file it needs,
and an accelerate-format checkpoint of earlier versions (its pickles are never opened); only then does it read
JSON and safetensors, neither of which can run code.

Every process writes into ``.tmp-step_NNNNNNN`` and the main process renames it once all have finished, so a
crash mid-write leaves no folder that :func:`latest_checkpoint` would pick. The data order and the per-step noise
are pure functions of (seed, step), so the step is the only data-order state a resumed run needs.

**DeepSpeed and FSDP.** Their optimizer state is sharded and cannot be restored from a full state dict, so under
either a checkpoint holds the gathered model weights (``model.safetensors``, when accelerate can gather them:
ZeRO-1/2, ZeRO-3 with ``stage3_gather_16bit_weights_on_model_save``, FSDP) and ``trainer_state.json``, is marked
``"resumable": false``, and resuming it (or resuming anything under DeepSpeed/FSDP) is refused with a message
saying so: such a run starts afresh. Training itself, checkpoints on their schedule and the final model work as
without them.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["CHECKPOINTS", "STATE_NAME", "FORMAT", "Checkpointed", "CheckpointError", "checkpoint_path",
           "latest_checkpoint", "save_checkpoint", "check_checkpoint", "load_checkpoint", "prune_checkpoints"]

CHECKPOINTS, STATE_NAME, INFO_NAME, MODEL_FILE = "checkpoints", "trainer_state.json", "checkpoint.json", \
    "model.safetensors"
FORMAT = "ophora-checkpoint/1"
_NAME = re.compile(r"^step_(\d{7,})$")
_OBJECT = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"model", "optimizer", "checkpoint", "trainer_state", "scaler"}
# file names of accelerate's save_state (checkpoints of earlier versions of the suite)
_ACCELERATE = re.compile(r"^(random_states_\d+\.pkl|custom_checkpoint_\d+\.pkl|optimizer(_\d+)?\.bin|"
                         r"scheduler(_\d+)?\.bin|sampler(_\d+)?\.bin|dl_state_dict(_\d+)?\.bin|scaler\.pt|"
                         r"pytorch_model(_\d+)?\.bin|pytorch_model_fsdp_\d+|optimizer_\d+|model(_\d+)?\.safetensors)$")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed (unknown or missing files, another format or setup)."""


@dataclass(frozen=True)
class Checkpointed:
    """What a checkpoint saves and restores besides the step: the prepared ``model`` and ``optimizer`` and
    named ``objects`` with ``state_dict()``/``load_state_dict()`` (the LR schedule, EMA). Names are lower-case
    identifiers other than ``model``, ``optimizer``, ``checkpoint``, ``trainer_state`` and ``scaler``."""

    model: Any
    optimizer: Any
    objects: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        bad = [n for n in self.objects if not _OBJECT.match(n) or n in _RESERVED or n.startswith("rng_")]
        if bad:
            raise ValueError(f"checkpointed object names {bad} are not allowed: use lower-case identifiers other "
                             f"than {sorted(_RESERVED)} and rng_*")


def checkpoint_path(run: str | os.PathLike, step: int) -> Path:
    return Path(run) / CHECKPOINTS / f"step_{step:07d}"


def _complete(run: Path) -> list[tuple[int, Path]]:
    folder = run / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted((step, p) for step, p in found if (p / STATE_NAME).is_file())


def latest_checkpoint(run: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    complete = _complete(Path(run))
    return complete[-1][1] if complete else None


def prune_checkpoints(run: str | os.PathLike, keep: int | None) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (``None`` keeps all), and the ``.tmp-step_*``
    folders of checkpoints a killed run left half-written. Call on the main process after a save, when no
    checkpoint is being written."""
    folder = Path(run) / CHECKPOINTS
    if folder.is_dir():
        for partial in folder.glob(".tmp-step_*"):
            shutil.rmtree(partial, ignore_errors=True)
    if keep is None:
        return
    for _, path in _complete(Path(run))[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """``value`` as JSON, its tensors moved into ``tensors`` (``{"tensor": name}``); tuples and dicts (any keys)
    are tagged objects, so every JSON object is a tag."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().to("cpu").contiguous()
        return {"tensor": name}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, tensors, f"{where} key"), _encode(v, tensors, f"{where}[{k!r}]")]
                         for k, v in value.items()]}
    raise TypeError(f"{where}: a {type(value).__name__} cannot go into a checkpoint (the suite stores tensors, "
                    f"numbers, strings, lists, tuples and dicts, never pickles)")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {"tensor"} and value["tensor"] in tensors:
        return tensors[value["tensor"]]
    if value.keys() == {"tuple"}:
        return tuple(_decode(v, tensors, where) for v in value["tuple"])
    if value.keys() == {"dict"}:
        return {_hashable(_decode(k, tensors, where)): _decode(v, tensors, where) for k, v in value["dict"]}
    raise CheckpointError(f"{where}: malformed entry {str(value)[:80]} (not written by the suite)")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of tensors that share memory with another one or view a larger storage (safetensors refuses them)."""
    seen, out = set(), {}
    for name, t in tensors.items():
        ptr, whole = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes() == t.numel() * t.element_size()
        out[name] = t.clone() if (ptr in seen or not whole) and t.numel() else t
        seen.add(ptr)
    return out


def _write_state(folder: Path, stem: str, state: Any) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, tensors, stem)
    save_file(_unshared(tensors), str(folder / f"{stem}.safetensors"))
    (folder / f"{stem}.json").write_text(json.dumps(structure) + "\n")


def _read_state(folder: Path, stem: str) -> Any:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / f"{stem}.safetensors"), device="cpu")
    return _decode(json.loads((folder / f"{stem}.json").read_text()), tensors, str(folder / f"{stem}.json"))


def _rng_state() -> dict[str, Any]:
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss,
                                                    gauss], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sharded(accelerator) -> bool:
    """DeepSpeed or FSDP: optimizer state sharded over processes."""
    return accelerator.distributed_type.name in ("DEEPSPEED", "FSDP")


def _objects(accelerator, parts: Checkpointed) -> dict[str, Any]:
    scaler = getattr(accelerator, "scaler", None)
    return {**parts.objects, **({"scaler": scaler} if scaler is not None else {})}


def _model_state(accelerator, model) -> dict[str, torch.Tensor] | None:
    """The full state dict (collective under DeepSpeed/FSDP); None where DeepSpeed cannot gather it."""
    try:
        return accelerator.get_state_dict(model)
    except ValueError as err:  # ZeRO-3 without stage3_gather_16bit_weights_on_model_save
        if not _sharded(accelerator):
            raise
        warnings.warn(f"checkpoint without model weights: {err}", stacklevel=3)
        return None


def save_checkpoint(accelerator, run: str | os.PathLike, step: int, state: dict[str, Any],
                    parts: Checkpointed) -> Path:
    """Save ``parts``, each process's RNG states and ``state`` (JSON) as the checkpoint of ``step``; all
    processes call this."""
    final = checkpoint_path(run, step)
    tmp = final.parent / f".tmp-{final.name}"
    main, resumable = accelerator.is_main_process, not _sharded(accelerator)
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    weights = _model_state(accelerator, parts.model)
    objects = _objects(accelerator, parts) if resumable else {}
    if main and weights is not None:
        _write_state_dict(tmp / MODEL_FILE, weights)
    if main and resumable:
        _write_state(tmp, "optimizer", parts.optimizer.state_dict())
        for name, obj in objects.items():
            _write_state(tmp, name, obj.state_dict())
    if resumable:
        _write_state(tmp, f"rng_{accelerator.process_index}", _rng_state())
    accelerator.wait_for_everyone()
    if main:
        info = {"format": FORMAT, "resumable": resumable, "processes": accelerator.num_processes,
                "objects": sorted(objects), "accelerator_step": int(getattr(accelerator, "step", 0)),
                "distributed_type": accelerator.distributed_type.name}
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / STATE_NAME).write_text(json.dumps({"step": step, **state}, indent=2, default=str) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def _write_state_dict(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file(_unshared({k: v.detach().to("cpu").contiguous() for k, v in state.items()}), str(path))


def _start_afresh(path: Path) -> str:
    return f"to start the run afresh, delete {path.parent} (or choose another output folder)"


def _read_info(path: Path, names: set[str]) -> dict[str, Any]:
    """``checkpoint.json``, after refusing folders of another format."""
    if INFO_NAME not in names:
        old = sorted(n for n in names if _ACCELERATE.match(n) or n.endswith((".pkl", ".bin", ".pt")))
        if old:
            raise CheckpointError(f"{path} is an accelerate-format checkpoint of an earlier version of the suite "
                                  f"({', '.join(old)}): the suite no longer loads its pickles, which can run code; "
                                  f"{_start_afresh(path)}")
        raise CheckpointError(f"{path} lacks {INFO_NAME} (expected in every checkpoint the suite writes, "
                              f"format {FORMAT}); {_start_afresh(path)}")
    try:
        info = json.loads((path / INFO_NAME).read_text())
    except ValueError as err:
        raise CheckpointError(f"{path / INFO_NAME} is not valid JSON ({err}); {_start_afresh(path)}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{path / INFO_NAME}: format {info.get('format') if isinstance(info, dict) else None!r}"
                              f", expected {FORMAT!r}; {_start_afresh(path)}")
    processes, objects = info.get("processes"), info.get("objects")
    if not (isinstance(processes, int) and 0 < processes <= 65536 and isinstance(objects, list)
            and all(isinstance(n, str) for n in objects)):
        raise CheckpointError(f"{path / INFO_NAME}: malformed (processes {processes!r}, objects {objects!r}); "
                              f"{_start_afresh(path)}")
    return info


def _expected(info: dict[str, Any], objects) -> dict[str, str]:
    """File name -> what it holds, for a resumable checkpoint of ``info`` holding ``objects`` (names)."""
    files = {STATE_NAME: "the trainer state", INFO_NAME: "the format record", MODEL_FILE: "the model weights"}
    stems = {"optimizer": "the optimizer state", **{n: f"the state of {n}" for n in objects},
             **{f"rng_{r}": f"process {r}'s RNG states" for r in range(info["processes"])}}
    for stem, what in stems.items():
        files[f"{stem}.json"] = f"{what} (structure)"
        files[f"{stem}.safetensors"] = f"{what} (tensors)"
    return files


def _refuse_unknown(path: Path, names: set[str], expected: dict[str, str]) -> None:
    unknown = sorted(names - expected.keys())
    if unknown:
        kind = "a pickle, never loaded" if any(n.endswith((".pkl", ".bin", ".pt", ".pth")) for n in unknown) \
            else "not part of the format"
        raise CheckpointError(f"{path} holds {', '.join(unknown)}, which the suite's checkpoint format ({FORMAT}) "
                              f"does not know ({kind}); expected only: {', '.join(sorted(expected))}. Nothing was "
                              f"loaded. The suite never writes such a file: find out who did before removing it "
                              f"to resume; or {_start_afresh(path)}")


def _refuse_missing(path: Path, names: set[str], expected: dict[str, str]) -> None:
    missing = sorted(expected.keys() - names)
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(f'{n} ({expected[n]})' for n in missing)}; expected: "
                              f"{', '.join(sorted(expected))}. Nothing was loaded; {_start_afresh(path)}")


def check_checkpoint(accelerator, path: str | os.PathLike, parts: Checkpointed) -> dict[str, Any]:
    """Refuse (:class:`CheckpointError`) a checkpoint that this run cannot resume, reading nothing but its JSON;
    return its ``checkpoint.json`` otherwise. Unknown files are refused first, so a planted pickle is named."""
    path = Path(path)
    names = {p.name for p in path.iterdir()}
    info = _read_info(path, names)
    if not info.get("resumable"):
        _refuse_unknown(path, names, {STATE_NAME: "", INFO_NAME: "", MODEL_FILE: ""})
        raise CheckpointError(f"{path} was written under {info.get('distributed_type')} and holds the model "
                              f"weights only (its sharded optimizer state is not saved): it cannot be resumed; "
                              f"{_start_afresh(path)}")
    objects = _objects(accelerator, parts)
    expected = _expected(info, info.get("objects") or [])
    _refuse_unknown(path, names, expected)
    if sorted(objects) != info.get("objects"):
        raise CheckpointError(f"{path} holds the state of {info.get('objects')}, this run restores "
                              f"{sorted(objects)}: it was written by another setup; {_start_afresh(path)}")
    if info.get("processes") != accelerator.num_processes:
        raise CheckpointError(f"{path} was written by {info.get('processes')} processes, this run has "
                              f"{accelerator.num_processes}: resume with the same number of processes, or "
                              f"{_start_afresh(path)}")
    if _sharded(accelerator):
        raise CheckpointError(f"resuming under {accelerator.distributed_type.name} is not supported (the suite's "
                              f"checkpoints hold full states, and a sharded optimizer cannot load them): resume "
                              f"{path} without DeepSpeed/FSDP, or {_start_afresh(path)}")
    _refuse_missing(path, names, expected)
    return info


def load_checkpoint(accelerator, path: str | os.PathLike, parts: Checkpointed) -> dict[str, Any]:
    """Restore ``parts`` and this process's RNG states from ``path`` (after :func:`check_checkpoint`); return its
    ``trainer_state.json``."""
    from safetensors.torch import load_file

    path = Path(path)
    info = check_checkpoint(accelerator, path, parts)
    state = json.loads((path / STATE_NAME).read_text())
    accelerator.unwrap_model(parts.model).load_state_dict(load_file(str(path / MODEL_FILE), device="cpu"))
    parts.optimizer.load_state_dict(_read_state(path, "optimizer"))
    for name, obj in _objects(accelerator, parts).items():
        obj.load_state_dict(_read_state(path, name))
    _set_rng_state(_read_state(path, f"rng_{accelerator.process_index}"))
    if hasattr(accelerator, "step"):
        accelerator.step = int(info.get("accelerator_step", 0))
    return state
