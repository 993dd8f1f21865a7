"""Training checkpoints: ``RUN/checkpoints/step_NNNNNNN/``, written whole or not at all.

A checkpoint is ``accelerator.save_state`` (model, optimizer, registered objects such as the LR scheduler and
EMA, and each process's python/numpy/torch RNG states; sharded under DeepSpeed and FSDP) plus
``trainer_state.json`` (step, stage, preset and its fingerprint, loss kind). Every process writes into
``.tmp-step_NNNNNNN`` and the main process renames it once all have finished, so a crash mid-write leaves no
folder that :func:`latest_checkpoint` would pick. The data order and the per-step noise are pure functions of
(seed, step), so the step is the only data-order state a resumed run needs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINTS", "STATE_NAME", "checkpoint_path", "latest_checkpoint", "save_checkpoint",
           "load_checkpoint", "prune_checkpoints"]

CHECKPOINTS, STATE_NAME = "checkpoints", "trainer_state.json"
_NAME = re.compile(r"^step_(\d{7,})$")


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


def save_checkpoint(accelerator, run: str | os.PathLike, step: int, state: dict[str, Any]) -> Path:
    """Save the accelerator state and ``state`` (JSON) as the checkpoint of ``step``; all processes call this."""
    final = checkpoint_path(run, step)
    tmp = final.parent / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_NAME).write_text(json.dumps({"step": step, **state}, indent=2, default=str) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str | os.PathLike) -> dict[str, Any]:
    """Restore the accelerator state from ``path``; return its ``trainer_state.json``."""
    path = Path(path)
    state = json.loads((path / STATE_NAME).read_text())
    accelerator.load_state(str(path))
    return state


def prune_checkpoints(run: str | os.PathLike, keep: int | None) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (``None`` keeps all)."""
    if keep is None:
        return
    for _, path in _complete(Path(run))[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
