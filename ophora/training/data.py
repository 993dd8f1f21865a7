"""Read a prepared folder and feed it to training in an order that depends only on (seed, step).

Batches never mix buckets. Each epoch shuffles every bucket with a seed derived from (seed, epoch, bucket),
cuts it into global batches (the last one wraps around to stay full) and shuffles the batch order; global step
``s`` takes batch ``s mod n`` of epoch ``s // n``, and process ``r`` takes its slice ``[r*B, (r+1)*B)``. With
no generator state to carry, a resumed run sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ophora.seeding import derive_seed
from ophora.training.prepare import INDEX_NAME, PREPARE_NAME, SHARDS

__all__ = ["PreparedSet", "PreparedDataError", "BatchPlan", "StepBatches"]


class PreparedDataError(ValueError):
    """A prepared folder that is missing, unfinished, or does not match the model being trained."""


@dataclass(frozen=True)
class Item:
    key: str
    instruction: str
    bucket: tuple[int, int, int]
    shard: int
    text: str


class PreparedSet:
    """The items of a prepared folder. ``load(i)`` -> (mean, logvar, prompt_embeds), float32 tensors
    [C, T', H', W'], [C, T', H', W'] and [L, D]."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.plan = self._read(PREPARE_NAME, "run `python -m ophora.prepare` first")
        index = self._read(INDEX_NAME, "prepare has not finished: run the same `python -m ophora.prepare` "
                                       "command again to complete it")
        self.items = [Item(r["key"], r["instruction"], tuple(r["bucket"]), r["shard"], r["text"])
                      for r in index["items"]]
        if not self.items:
            raise PreparedDataError(f"{self.root}: no clip was prepared ({len(index['skipped'])} skipped)")
        self._check_tensors(index["items"])

    def _read(self, name: str, hint: str) -> dict:
        path = self.root / name
        if not path.is_file():
            raise PreparedDataError(f"not a prepared folder: expected {path.resolve()} ({hint})")
        return json.loads(path.read_text())

    def shard_path(self, shard: int) -> Path:
        return self.root / SHARDS / f"{shard:05d}.safetensors"

    def _check_tensors(self, records: list[dict]) -> None:
        """Every latent and text tensor the index names must be in its shard, with the recorded shape."""
        from safetensors import safe_open

        for shard in sorted({item.shard for item in self.items}):
            path = self.shard_path(shard)
            if not path.is_file():
                raise PreparedDataError(f"missing latents: expected shard {path.resolve()}; run prepare again")
            with safe_open(str(path), "pt") as handle:
                names = set(handle.keys())
                for record in (r for r in records if r["shard"] == shard):
                    for name in (f"latent/{record['key']}/mean", f"latent/{record['key']}/logvar", record["text"]):
                        if name not in names:
                            raise PreparedDataError(f"missing latents: {path} has no tensor {name!r} for clip "
                                                    f"{record['key']!r}; delete the shard and run prepare again")
                    shape = list(handle.get_slice(f"latent/{record['key']}/mean").get_shape())
                    if shape != record["latent_shape"]:
                        raise PreparedDataError(f"mismatched latents: {path} holds {shape} for clip "
                                                f"{record['key']!r}, the index says {record['latent_shape']}")

    def check_model(self, transformer_config, frozen_fingerprint: str) -> None:
        """Raise unless these latents were made by the frozen parts of the model being trained."""
        plan = self.plan
        if plan["frozen_fingerprint"] != frozen_fingerprint:
            raise PreparedDataError(
                f"mismatched latents: {self.root} was encoded by the VAE/T5 of {plan['model_dir']} (frozen "
                f"fingerprint {plan['frozen_fingerprint']}), but the model being trained has frozen fingerprint "
                f"{frozen_fingerprint}; prepare the data with --model pointing at the model you train")
        if plan["latent_channels"] != transformer_config.in_channels:
            raise PreparedDataError(f"mismatched latents: {plan['latent_channels']} latent channels, the "
                                    f"transformer takes {transformer_config.in_channels}")
        if plan["max_text_length"] != transformer_config.max_text_seq_length:
            raise PreparedDataError(f"mismatched text embeddings: {plan['max_text_length']} tokens, the "
                                    f"transformer takes {transformer_config.max_text_seq_length}")

    @lru_cache(maxsize=64)  # noqa: B019 - open shard handles, reused per process; a class-level cache keeps pickling
    def _handle(self, shard: int):
        from safetensors import safe_open

        return safe_open(str(self.shard_path(shard)), "pt")

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item = self.items[i]
        handle = self._handle(item.shard)
        mean = handle.get_tensor(f"latent/{item.key}/mean").float()
        logvar = handle.get_tensor(f"latent/{item.key}/logvar").float()
        return mean, logvar, handle.get_tensor(item.text).float()

    def __len__(self) -> int:
        return len(self.items)


class BatchPlan:
    """Global batches of ``global_batch`` item indices, a pure function of (seed, step)."""

    def __init__(self, buckets: list[tuple[int, int, int]], global_batch: int, seed: int):
        self.global_batch, self.seed = global_batch, seed
        groups: dict[tuple, list[int]] = {}
        for i, bucket in enumerate(buckets):
            groups.setdefault(tuple(bucket), []).append(i)
        self.groups = [groups[key] for key in sorted(groups)]
        self.per_epoch = sum(-(-len(g) // global_batch) for g in self.groups)
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch``, in the order they are used."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        batches = []
        for b, members in enumerate(self.groups):
            order = np.random.default_rng(derive_seed(self.seed, "order", epoch, b)).permutation(members)
            count = -(-len(order) // self.global_batch)
            wrapped = np.resize(order, count * self.global_batch)  # np.resize repeats from the start
            batches += [wrapped[k * self.global_batch:(k + 1) * self.global_batch].tolist() for k in range(count)]
        shuffle = np.random.default_rng(derive_seed(self.seed, "batches", epoch)).permutation(len(batches))
        self._cached = (epoch, [batches[k] for k in shuffle])
        return self._cached[1]

    def batch(self, step: int) -> list[int]:
        """Item indices of global step ``step`` (0-based)."""
        return self.epoch(step // self.per_epoch)[step % self.per_epoch]


class StepBatches(torch.utils.data.Dataset):
    """Dataset over steps ``[start, stop)``: element ``k`` is this process's slice of step ``start + k``,
    stacked: mean, logvar [B, C, T', H', W'] and prompt_embeds [B, L, D]. Use with ``batch_size=None``."""

    def __init__(self, data: PreparedSet, plan: BatchPlan, start: int, stop: int, rank: int, per_rank: int):
        self.data, self.plan, self.start, self.stop = data, plan, start, stop
        self.rank, self.per_rank = rank, per_rank

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, k: int):
        indices = self.plan.batch(self.start + k)[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
        parts = [self.data.load(i) for i in indices]
        return tuple(torch.stack(column) for column in zip(*parts))
