"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than two under load.

    Use with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``; the thread count is restored after
    the module.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def four_clip_world(tmp_path_factory):
    """A one-patient OphSim world (16 frames at 64x64 per clip) and a manifest of its first four instruction
    clips: (world folder, four.csv). Shared by the baseline tests."""
    from ophora.data import manifests
    from ophora.sim.world import WorldConfig, build_world

    root = tmp_path_factory.mktemp("four_clip_world")
    build_world(WorldConfig(videos=1, seed=0, frames=16, size=(64, 64)), root / "world", progress=False)
    instructions = root / "world" / "ophora_instructions" / "instructions.csv"
    four = instructions.parent / "four.csv"
    manifests.write_instruction_set(four, manifests.read_instruction_set(instructions)[:4])
    return root / "world", four
