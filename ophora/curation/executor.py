"""Running the pipeline over shards: in this process, in a local process pool, or on a Ray cluster.

Clips are cut into shards of ``shard_size`` consecutive clips (in manifest order, so the same manifest gives
the same shards); each shard has its own ledger and is curated by one worker at a time. Shards are handed out
largest first, so that a short shard, not a long one, ends the run while other workers idle. Progress is
counted per clip (local) or per shard (Ray) on a tqdm bar that shows clips/s.

Every worker process is single-threaded (:func:`limit_threads`) except for video decoding, which gets the
worker's share of the cores (:func:`ophora.curation.dynamics.set_decode_threads`: cores // workers): parallelism
comes from the workers, and libraries that start a thread per core in each of N workers would oversubscribe the
cores N times. Workers
are never forked from the calling process (:func:`worker_context`).
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
from tqdm import tqdm

from ophora.configs import ConfigError
from ophora.curation.config import CurationConfig, redact
from ophora.curation.dynamics import set_decode_threads
from ophora.curation.ledger import Ledger, ledger_path
from ophora.curation.pipeline import Pipeline
from ophora.curation.stage import ClipItem

__all__ = ["Shard", "plan_shards", "ledger_record", "run_shard", "execute", "limit_threads", "worker_context"]

# Thread-pool sizes read from the environment by native libraries when they start (OpenMP, BLAS, numexpr).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class Shard:
    """Clips ``items`` of shard ``index`` still to curate, in run number ``run`` of the output folder."""

    index: int
    items: tuple[ClipItem, ...]
    run: int = 1


def plan_shards(items: Sequence[ClipItem], shard_size: int, done: set[str] = frozenset(),
                run: int = 1) -> list[Shard]:
    """Shards of ``shard_size`` consecutive clips, without the clips in ``done``; empty shards left out."""
    shards = []
    for index, start in enumerate(range(0, len(items), shard_size)):
        todo = tuple(item for item in items[start:start + shard_size] if item.clip_id not in done)
        if todo:
            shards.append(Shard(index, todo, run))
    return shards


def ledger_record(record: dict, item: ClipItem, run: int, secrets: tuple[str, ...] = ()) -> dict:
    """A pipeline record as the ledger keeps it: stamped with the input fingerprint, the run and whether the
    clip failed (some stage could not evaluate it), with ``secrets`` redacted from every string and header
    values (Authorization, Bearer) from every reason (not from instructions, which may say "bearer")."""
    failed = any(verdict["status"] == "error" for verdict in record["verdicts"])
    record = redact({**record, "input": item.fingerprint, "run": run, "failed": failed}, secrets, headers=False)
    record["drop_reason"] = redact(record["drop_reason"], secrets)
    for verdict in record["verdicts"]:
        verdict["reason"] = redact(verdict["reason"], secrets)
    return record


def run_shard(pipeline: Pipeline, shard: Shard, ledger_dir: Path, batch_size: int,
              on_clips: Callable[[int], None] = lambda n: None) -> int:
    """Curate ``shard`` in batches, appending each record to the shard's ledger; returns clips done."""
    secrets = pipeline.config.secrets()
    with Ledger(ledger_path(ledger_dir, shard.index)) as ledger:
        for start in range(0, len(shard.items), batch_size):
            batch = shard.items[start:start + batch_size]
            for item, record in zip(batch, pipeline.run(batch)):
                ledger.append(ledger_record(record, item, shard.run, secrets))
            on_clips(len(batch))
    return len(shard.items)


def limit_threads() -> None:
    """Make this (worker) process single-threaded: OpenCV's thread pool, torch's intra-op threads when torch is
    loaded, and the thread-count variables of libraries loaded later (and of subprocesses). FFmpeg decoding
    threads are chosen per call (the dynamics stage decodes in the calling thread)."""
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def worker_context(preload: Sequence[str] = ("ophora.curation.pipeline",)) -> multiprocessing.context.BaseContext:
    """The multiprocessing context for worker processes: "forkserver" where the platform has it, else "spawn".

    A worker forked from a process that already ran OpenCV or FFmpeg threads inherits their locks mid-use and
    can deadlock (``cv2.setNumThreads`` in such a child waits forever); the fork server is a clean process,
    started once, with ``preload`` imported, so each new worker still starts in milliseconds.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def _largest_first(shards: list[Shard]) -> list[Shard]:
    """Shards by decreasing size (stable): the run's tail is then a small shard."""
    return sorted(shards, key=lambda shard: -len(shard.items))


_WORKER: dict = {}


def _init_worker(config: CurationConfig, progress, workers: int) -> None:
    limit_threads()
    set_decode_threads(workers)
    _WORKER.update(pipeline=Pipeline(config), progress=progress)


def _worker_shard(shard: Shard, ledger_dir: Path, batch_size: int) -> int:
    return run_shard(_WORKER["pipeline"], shard, ledger_dir, batch_size, _WORKER["progress"].put)


def _run_here(config: CurationConfig, shards: list[Shard], ledger_dir: Path, bar: tqdm) -> None:
    set_decode_threads(1)
    pipeline = Pipeline(config)
    try:
        for shard in shards:
            run_shard(pipeline, shard, ledger_dir, config.execution.batch_size, bar.update)
    finally:
        pipeline.close()


def _run_pool(config: CurationConfig, shards: list[Shard], ledger_dir: Path, bar: tqdm) -> None:
    context = worker_context()
    progress = context.Queue()
    workers = min(config.execution.workers, len(shards))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(config, progress, workers)) as pool:
        pending = {pool.submit(_worker_shard, s, ledger_dir, config.execution.batch_size)
                   for s in _largest_first(shards)}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress, bar)
            for future in finished:
                future.result()  # a crash in a worker is a bug: surface it (the ledgers keep what was done)
    _drain(progress, bar)


def _drain(progress, bar: tqdm) -> None:
    while True:
        try:
            bar.update(progress.get_nowait())
        except queue_module.Empty:
            return


def _ray_shard(config: CurationConfig, shard: Shard, ledger_dir: str) -> int:
    limit_threads()
    set_decode_threads(config.execution.workers)
    pipeline = Pipeline(config)
    try:
        return run_shard(pipeline, shard, Path(ledger_dir), config.execution.batch_size)
    finally:
        pipeline.close()


def _run_ray(config: CurationConfig, shards: list[Shard], ledger_dir: Path, bar: tqdm) -> None:
    """One Ray task per shard, ``workers`` in flight; the ledger folder must be shared by all nodes."""
    try:
        import ray
    except ImportError:
        raise ConfigError("execution.executor", "ray needs Ray: pip install 'ophora[ray]'") from None
    started = not ray.is_initialized()
    if started:
        address = config.execution.ray_address
        ray.init(address=address, num_cpus=None if address else config.execution.workers,
                 include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(_ray_shard)
        queue, running = _largest_first(shards), []
        while queue or running:
            while queue and len(running) < config.execution.workers:
                running.append(task.remote(config, queue.pop(0), str(ledger_dir)))
            finished, running = ray.wait(running, num_returns=1)
            bar.update(ray.get(finished[0]))
    finally:
        if started:
            ray.shutdown()


def execute(config: CurationConfig, shards: list[Shard], ledger_dir: Path, total: int, done: int,
            progress: bool = True) -> None:
    """Curate ``shards`` with ``config.execution`` (executor, workers), showing a clips/s progress bar."""
    bar = tqdm(total=total, initial=done, desc="curation", unit="clip", disable=not progress, smoothing=0.1)
    try:
        if config.execution.executor == "ray":
            _run_ray(config, shards, ledger_dir, bar)
        elif config.execution.workers > 1 and len(shards) > 1:
            _run_pool(config, shards, ledger_dir, bar)
        else:
            _run_here(config, shards, ledger_dir, bar)
    finally:
        bar.close()
