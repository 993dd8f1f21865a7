"""One way to start accelerate for every stage, on GPUs and on CPU-only machines.

accelerate only forms a CPU process group (gloo) when asked for the CPU, so without CUDA the accelerator is
created with ``cpu=True``: ``torchrun --nproc_per_node 2 -m ophora.train ...`` then shards work over two CPU
processes, and a single process behaves as before.
"""
from __future__ import annotations

import torch

__all__ = ["make_accelerator"]


def make_accelerator(**kwargs):
    """``accelerate.Accelerator(**kwargs)``, on the CPU when no CUDA device is present."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)
