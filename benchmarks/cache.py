"""Cache of reference (real-set) statistics, keyed by everything that made them.

The key (:func:`reference_key`, the one place a key is built) is a sha256 over

- the real set's content (:func:`set_fingerprint`): the manifest file's bytes where the set has one, and for
  every video its path relative to the set, its size and the sha256 of its bytes (a missing file counts as
  missing). Full content hashing reads every byte once per run; a (path, size, mtime)
  proxy would be cheaper but silently reuses stale statistics after a copy that keeps mtimes, so it is not
  used;
- every field of the protocol (``dataclasses.asdict``), the detector's sha256, the seed (real clips' random
  offsets), the evaluation geometry (:mod:`ophora.data.geometry`) where one changes the frames, and the cache
  format. An equal-N draw of the real set changes its fingerprint (only the drawn videos are hashed).

An entry is one ``.npz`` under ``<cache dir>/stats/`` (``$OPHORA_CACHE``, else the user cache dir; never in
the package): the arrays of the metric's state of the real set (``to_arrays``; for FID/FVD the
:class:`FeatureStats` sums, the factor of the real covariance, so scoring a model against a cached reference
costs one eigenvalue solve, and the per-row features (float16) when a metric needs them), N videos and the
failed inputs. A hit restores exactly the arrays a miss computed, so both give identical numbers. Hits and
misses are logged (logger ``benchmarks.cache``).

The cache never decides a result and never stops a run. An entry that cannot be used (truncated, empty, not a
``.npz``, arrays that fail their sha256 or do not rebuild a state: any exception while reading it) is named in
a warning, set aside as ``<name>.corrupt-<UTC time>`` for inspection, and treated as a miss, so the statistics
are recomputed and cached again. A failed write (a full disk, a read-only cache folder) leaves no partial
entry and only skips the cache. Both land in the ``notes`` list the caller passes, for its result file.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ophora.data.atomic import atomic_path
from ophora.data.frame_folders import list_frames
from ophora.data.sets import VideoSet
from ophora.data.video import VideoDecodeError
from ophora.hashing import sha256_file
from ophora.weights import cache_dir

__all__ = ["CACHE_FORMAT", "Reference", "stats_dir", "set_fingerprint", "reference_key", "reference_path",
           "load_reference", "save_reference", "set_aside"]

CACHE_FORMAT = 1
log = logging.getLogger(__name__)


@dataclass
class Reference:
    """A metric's state of a real set under one protocol (``state.videos``: N videos that contributed;
    ``to_arrays()``: what an entry holds), the inputs that failed, and where it is cached."""

    key: str
    state: Any
    failed: list[dict[str, Any]]
    path: Path | None = None
    hit: bool = False


def stats_dir() -> Path:
    """Folder of cached reference statistics: ``<cache dir>/stats``."""
    return cache_dir() / "stats"


def set_fingerprint(video_set: VideoSet) -> str:
    """sha256 of a set's content: manifest bytes, then (relative path, size, sha256) of each video by path."""
    digest = hashlib.sha256(f"ophora-video-set/{video_set.kind}\n".encode())
    if video_set.manifest is not None:
        digest.update(b"manifest\n" + video_set.manifest.read_bytes() + b"\n")
    for item in sorted(video_set.items, key=lambda i: i.key):
        digest.update(_item_line(item).encode())
    return digest.hexdigest()


def _item_line(item) -> str:
    """One fingerprint line: a video file's size and sha256, or a frame folder's images (name, size, sha256)."""
    if item.path.is_file():
        return f"{item.key}\t{item.path.stat().st_size}\t{sha256_file(item.path)}\n"
    if item.path.is_dir():  # a folder of frame images (ophora.data.frame_folders), e.g. Endora's output

        try:
            images = list_frames(item.path)
        except VideoDecodeError as err:  # the extraction records the failure; the fingerprint notes it
            return f"{item.key}\tunreadable\t{err}\n"
        folder = hashlib.sha256()
        for image in images:
            folder.update(f"{image.name}\t{image.stat().st_size}\t{sha256_file(image)}\n".encode())
        return f"{item.key}\tframes\t{folder.hexdigest()}\n"
    return f"{item.key}\tmissing\n"


def reference_key(fingerprint: str, protocol: Any, detector_sha256: str, seed: int,
                  geometry: dict[str, Any] | None = None) -> str:
    """THE cache key of reference statistics: sha256 of (format, set fingerprint, protocol fields, detector
    sha256, seed and, where one is applied, the evaluation geometry's fields) as canonical JSON."""
    payload = {"format": CACHE_FORMAT, "real_set": fingerprint, "protocol": dataclasses.asdict(protocol),
               "detector_sha256": detector_sha256, "seed": int(seed)}
    if geometry is not None:  # the native geometry keeps the keys made before geometries existed
        payload["geometry"] = geometry
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def reference_path(key: str, protocol: Any) -> Path:
    """Where the entry for ``key`` lives: ``<stats dir>/<protocol name>-<key[:32]>.npz``."""
    return stats_dir() / f"{protocol.name.replace('/', '-')}-{key[:32]}.npz"


def save_reference(reference: Reference, protocol: Any, meta: dict[str, Any] | None = None,
                   notes: list[str] | None = None) -> Path | None:
    """Write ``reference`` atomically to :func:`reference_path`; return the path, or None when there is nothing to
    cache or the write failed (an ``OSError`` such as a full disk: warned, added to ``notes``, no entry left)."""
    arrays = reference.state.to_arrays()
    if arrays is None:
        return None
    path = reference_path(reference.key, protocol)
    info = {"key": reference.key, "videos": reference.state.videos, "failed": reference.failed,
            "protocol": dataclasses.asdict(protocol), "arrays_sha256": _arrays_sha256(arrays), **(meta or {})}
    arrays["meta"] = np.array(json.dumps(info, default=str))
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    except OSError as err:
        _note(notes, f"reference statistics for {protocol.name} were not cached, cache skipped ({path}: "
                     f"{_reason(err)}); the result is unaffected, the next run recomputes them")
        return None
    log.info("reference statistics cached for %s: %s", protocol.name, path)
    return path


def load_reference(key: str, protocol: Any, restore: Callable[[dict[str, Any], int], Any],
                   need_rows: bool = False, notes: list[str] | None = None) -> Reference | None:
    """The cached entry for ``key`` with its state rebuilt by ``restore(arrays, videos)``, or None (a miss:
    absent, lacking rows that are needed, or unusable: then warned, added to ``notes`` and set aside)."""
    path = reference_path(key, protocol)
    if not path.is_file():
        log.info("reference statistics cache miss for %s (key %s): no %s", protocol.name, key[:12], path)
        return None
    try:
        arrays, meta = _read_entry(path, key)
        if need_rows and "rows" not in arrays:
            log.info("reference statistics cache miss for %s: %s holds no per-row features", protocol.name, path)
            return None
        state = restore(arrays, int(meta["videos"]))
        failed = [dict(entry) for entry in meta["failed"]]
    except Exception as err:  # whatever is wrong with an entry, recomputing is the remedy
        moved = set_aside(path)
        _note(notes, f"reference statistics cache entry {path} is unusable ({_reason(err)}); "
                     f"{'set aside as ' + moved.name if moved else 'left in place'}, recomputing")
        return None
    log.info("reference statistics cache hit for %s: %s", protocol.name, path)
    return Reference(key, state, failed, path, hit=True)


def _read_entry(path: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """An entry's arrays (without ``meta``) and its meta, checked: written for ``key``, arrays intact."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if "meta" not in arrays:
        raise ValueError(f"no 'meta' array (found {sorted(arrays)})")
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("key") != key:
        raise ValueError(f"entry written for key {str(meta.get('key'))[:12]}, not {key[:12]}")
    expected = meta.get("arrays_sha256")  # absent in entries written before it was recorded
    if expected is not None and expected != _arrays_sha256(arrays):
        raise ValueError("arrays do not match their recorded sha256")
    return arrays, meta


def _arrays_sha256(arrays: dict[str, Any]) -> str:
    """sha256 over each array's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\t{array.dtype.str}\t{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def set_aside(path: Path) -> Path | None:
    """Rename an unusable entry to ``<name>.corrupt-<UTC time>`` (kept for inspection, never read again);
    the new path, or None when it cannot be moved (it is then overwritten by the next save)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for n in range(1, 100):
        if not target.exists():
            break
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        path.rename(target)
    except OSError as err:
        log.warning("could not set aside %s (%s)", path, _reason(err))
        return None
    return target


def _reason(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        text += " (the disk is full)"
    return text


def _note(notes: list[str] | None, message: str) -> None:
    log.warning("%s", message)
    if notes is not None:
        notes.append(message)
