"""One way to start accelerate for every stage, on GPUs and on CPU-only machines.

accelerate only forms a CPU process group (gloo) when asked for the CPU, so without CUDA the accelerator is
created with ``cpu=True``: ``torchrun --nproc_per_node 2 -m ophora.train ...`` then shards work over two CPU
processes, and a single process behaves as before.
"""
from __future__ import annotations

import warnings

import torch

__all__ = ["make_accelerator", "effective_precision"]


def make_accelerator(**kwargs):
    """``accelerate.Accelerator(**kwargs)``, on the CPU when no CUDA device is present.

    accelerate keeps one state per process and refuses a second accelerator with another ``mixed_precision``;
    one process may train several runs (Table 1 does), so that state is reset first (the process group, held
    apart in accelerate's ``PartialState``, stays).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    wanted = str(kwargs.get("mixed_precision") or "no")
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != wanted:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)


def effective_precision(accelerator) -> str:
    """The precision training really runs in, for the run record: ``fp32``, ``bf16 autocast``, ``fp16 autocast``
    (with a gradient scaler) or ``<fp16|bf16> (DeepSpeed)``. accelerate quietly runs an fp16 request in full
    precision on a CPU (CPU autocast is bf16 only), so that case reads ``fp32``, with a warning."""
    requested = accelerator.mixed_precision
    if requested == "no":
        return "fp32"
    if accelerator.state.deepspeed_plugin is not None:
        return f"{requested} (DeepSpeed)"
    if accelerator.native_amp:
        return f"{requested} autocast"
    warnings.warn(f"mixed_precision={requested} is not available on {accelerator.device.type}: training runs in "
                  f"fp32 (on a CPU use bf16)", stacklevel=2)
    return "fp32"
