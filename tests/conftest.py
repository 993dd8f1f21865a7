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
