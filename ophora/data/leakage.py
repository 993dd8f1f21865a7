"""Leakage between the clips a model learns from and the clips it is judged on: shared source videos and
near-duplicate frames. Table 1 and Table 2 run :func:`check_leakage` before they train or score anything.

Two checks, one :class:`LeakageReport`:

- **source videos**: a held-out clip whose source video also gave a training clip. Ophora-160K clip ids are
  ``<video id>_<index>`` (``X3jTUYMflCk_26`` comes from video ``X3jTUYMflCk``); raw sets carry a
  ``source_video`` column; OphNet rows carry ``video_id``. A :class:`ClipRef` names its source video.
- **near-duplicate frames** (:class:`PHashProtocol`): ``frames`` frames spaced uniformly over each clip, each
  reduced to a ``hash_size**2``-bit DCT perceptual hash (:func:`phash`: the algorithm of the ``imagehash``
  package, grey levels, Lanczos to ``4 * hash_size`` square, 2-D DCT-II, the lowest ``hash_size`` square of
  frequencies against their median). A held-out clip and a training clip are near-duplicates when at least
  ``min_frames`` of the held-out clip's hashed frames lie within ``max_distance`` bits (Hamming) of some frame
  of the training clip. Defaults: 4 frames, 256 bits (hash_size 16), 28 bits, 2 frames. Measured on OphSim
  clips (64 and 128 px): a copy re-encoded at CRF 28-35, or resized by 0.75 or 2 and re-encoded, keeps its
  second-nearest frame within 18 bits (30 for a copy shrunk to 32 px); clips of other patients, the same phase
  included, lie 38 or more bits apart (0.1% of 12,960 pairs below 44). The usual 64-bit hash (hash_size 8) does
  not separate them: microscope views of different eyes come within 2 bits, since grey-level layout is all it
  sees (``tests/test_leakage.py``).

A leak is refused (:class:`LeakageError`, the clips of both sides named, the first few and how many more) unless
the caller allows it for a deliberate experiment; the report, allowed or not, goes into the results.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ophora.data.frames import Uniform, VideoDecodeError
from ophora.hashing import cache_key

__all__ = ["PHashProtocol", "LeakageConfig", "ClipRef", "Leak", "LeakageReport", "LeakageError", "source_video",
           "phash", "hamming", "ClipHashes", "clip_hashes", "near_duplicates", "check_leakage",
           "refs_of_instruction_set", "PHASH_VERSION"]

PHASH_VERSION = "phash-dct/v1"  # changes when the hash of a frame would change
MAX_NAMED = 5  # leaks named in an error message; the rest are counted


@dataclass(frozen=True)
class PHashProtocol:
    """How near-duplicate frames are found: ``frames`` frames per clip (uniform, first to last), each hashed to
    ``hash_size**2`` bits; a pair of clips is a near-duplicate when >= ``min_frames`` held-out frames are within
    ``max_distance`` bits of a training frame (``min_frames`` is capped at ``frames``)."""

    frames: int = 4
    hash_size: int = 16
    max_distance: int = 28
    min_frames: int = 2
    version: str = PHASH_VERSION

    def __post_init__(self):
        if not (1 <= self.frames <= 64 and self.hash_size in (8, 16, 24, 32)
                and 0 <= self.max_distance <= self.hash_size ** 2 and self.min_frames >= 1):
            raise ValueError(f"PHashProtocol needs 1 <= frames <= 64, hash_size 8, 16, 24 or 32, 0 <= max_distance "
                             f"<= hash_size**2 and min_frames >= 1; got {self}")


@dataclass(frozen=True)
class LeakageConfig:
    """The ``leakage`` section of a Table 1 or Table 2 config: ``source_videos`` and ``phash`` switch the two
    checks; ``allow: true`` records leaks instead of refusing them (for a deliberate experiment; the results say
    so). ``frames``, ``max_distance`` and ``min_frames`` are the :class:`PHashProtocol`."""

    source_videos: bool = True
    phash: bool = True
    frames: int = 4
    hash_size: int = 16
    max_distance: int = 28
    min_frames: int = 2
    allow: bool = False

    @property
    def protocol(self) -> PHashProtocol:
        return PHashProtocol(self.frames, self.hash_size, self.max_distance, self.min_frames)


@dataclass(frozen=True)
class ClipRef:
    """One clip as the leakage checks see it: its id, its source video, and where its frames are (``path``,
    optionally the ``window`` [start, end) in seconds of an untrimmed video; None: not checked by hash)."""

    clip_id: str
    source: str
    path: Path | None = None
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class Leak:
    """A held-out clip that leaks from a training set: ``kind`` ``source video`` (``detail``: the shared video
    id) or ``near-duplicate`` (``detail``: matched frames and their smallest Hamming distance)."""

    kind: str
    heldout: str
    heldout_set: str
    train: str
    train_set: str
    detail: str

    def describe(self) -> str:
        return (f"{self.kind}: held-out clip {self.heldout!r} ({self.heldout_set}) and training clip "
                f"{self.train!r} ({self.train_set}): {self.detail}")


class LeakageError(ValueError):
    """Held-out clips leak from training data; the message names the clips of both sides."""


@dataclass
class LeakageReport:
    """What was checked (sets, clip counts, checks skipped and why) and every leak found."""

    protocol: dict
    checked: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    allowed: bool = False

    def to_json(self) -> dict:
        return {"protocol": self.protocol, "checked": self.checked, "skipped": self.skipped,
                "leaks": len(self.leaks), "allowed": self.allowed,
                "examples": [dataclasses.asdict(leak) for leak in self.leaks[:50]]}

    def message(self, limit: int = MAX_NAMED) -> str:
        """The leaks in words: the first ``limit`` named, then how many more."""
        lines = [f"{len(self.leaks)} leak(s) between held-out and training clips:"]
        lines += [f"  - {leak.describe()}" for leak in self.leaks[:limit]]
        if len(self.leaks) > limit:
            lines.append(f"  ... and {len(self.leaks) - limit} more (results.json lists up to 50)")
        return "\n".join(lines)

    def enforce(self, allow: bool = False) -> LeakageReport:
        """Raise :class:`LeakageError` when there are leaks, unless ``allow`` (then the report says so)."""
        self.allowed = bool(allow and self.leaks)
        if self.leaks and not allow:
            raise LeakageError(self.message() + "\nUse other held-out clips (other source videos), or set "
                               "leakage.allow: true for a deliberate experiment (recorded in the results).")
        return self


def source_video(clip_id: str) -> str:
    """The source video of an Ophora-160K clip id: ``X3jTUYMflCk_26`` -> ``X3jTUYMflCk`` (an id without a
    numeric ``_<index>`` suffix is its own video)."""
    stem, _, index = clip_id.strip().rpartition("_")
    return stem if stem and index.isdigit() else clip_id.strip()


def refs_of_instruction_set(csv: str | os.PathLike) -> list[ClipRef]:
    """The clips of an Ophora-160K-layout CSV (``clip id,instruction``, clips in ``clips/``) or of a raw set
    (``clip_id,...,source_video,...``), with their source videos."""
    from ophora.data import manifests

    csv = Path(csv)
    with open(csv, encoding="utf-8-sig") as handle:
        header = handle.readline()
    if "source_video" in header:
        return [ClipRef(c.clip_id, c.source_video, Path(c.path)) for c in manifests.read_raw_set(csv)]
    return [ClipRef(c.clip_id, source_video(c.clip_id), c.path)
            for c in manifests.read_instruction_set(csv, check_files=False)]


# -- perceptual hash -------------------------------------------------------------------------------------------
def phash(frame: np.ndarray, hash_size: int = 16) -> np.ndarray:
    """DCT perceptual hash of one frame ``uint8 [H, W, 3]`` (or ``[H, W]`` grey) as ``hash_size**2 / 64``
    uint64 words (bit 63 of word 0 first): the algorithm of ``imagehash.phash`` (grey levels, Lanczos to
    ``4 * hash_size`` square, 2-D DCT-II, the ``hash_size`` square of lowest frequencies against its median)."""
    from PIL import Image
    from scipy.fft import dct

    side = 4 * hash_size
    image = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("L").resize((side, side), Image.LANCZOS)
    low = dct(dct(np.asarray(image, dtype=np.float64), axis=0), axis=1)[:hash_size, :hash_size]
    bits = (low > np.median(low)).ravel()
    return np.packbits(bits).view(">u8").astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between hashes of uint64 words ``[..., W]`` (int32 ``[...]``), broadcast like numpy."""
    words = np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
    return words.sum(axis=-1, dtype=np.int32)


@dataclass(frozen=True)
class ClipHashes:
    """pHashes of a list of clips: ``hashes`` uint64 [N, frames, words], ``valid`` bool [N] (False: the clip could not
    be decoded, see ``problems``)."""

    hashes: np.ndarray
    valid: np.ndarray
    problems: tuple[str, ...] = ()


def clip_hashes(clips: Sequence[ClipRef], protocol: PHashProtocol = PHashProtocol(),
                cache: Path | None = None) -> ClipHashes:
    """The pHash of ``protocol.frames`` uniform frames of every clip; a clip that cannot be decoded is marked
    invalid (it never matches) with a line in ``problems``. ``cache``: a folder for the hashes of this exact
    list (keyed by protocol, paths, sizes, modification times and windows)."""
    from ophora.data.video import read_video

    key = cache_key([dataclasses.asdict(protocol), [(str(c.path), _stamp(c.path), c.window) for c in clips]])
    cached = cache / f"phash-{key}.npz" if cache is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached) as saved:
            return ClipHashes(saved["hashes"], saved["valid"], tuple(str(p) for p in saved["problems"]))
    hashes = np.zeros((len(clips), protocol.frames, protocol.hash_size ** 2 // 64), dtype=np.uint64)
    valid = np.zeros(len(clips), dtype=bool)
    problems = []
    for i, clip in enumerate(clips):
        try:
            frames = read_video(clip.path, Uniform(protocol.frames), window=clip.window)
        except (VideoDecodeError, OSError, ValueError) as err:
            problems.append(f"{clip.clip_id} ({clip.path}): {str(err).splitlines()[0][:200]}")
            continue
        hashes[i] = [phash(f, protocol.hash_size) for f in frames]
        valid[i] = True
    if cached is not None:
        from ophora.data.atomic import atomic_path

        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, hashes=hashes, valid=valid, problems=np.array(problems, dtype=str))
    return ClipHashes(hashes, valid, tuple(problems))


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except (OSError, TypeError):
        return None
    return stat.st_size, stat.st_mtime_ns


def near_duplicates(heldout: ClipHashes, train: ClipHashes, protocol: PHashProtocol = PHashProtocol(),
                    chunk: int = 256) -> list[tuple[int, int, int, int]]:
    """(held-out index, train index, matched frames, smallest distance) of every near-duplicate pair, in
    held-out order; memory stays bounded by the chunks whatever the set sizes."""
    need = min(protocol.min_frames, protocol.frames)
    h_index, t_index = np.flatnonzero(heldout.valid), np.flatnonzero(train.valid)
    pairs = []
    for h0 in range(0, len(h_index), chunk):
        rows = h_index[h0:h0 + chunk]
        block = heldout.hashes[rows]  # [b, F, W]
        for t0 in range(0, len(t_index), 4 * chunk):
            cols = t_index[t0:t0 + 4 * chunk]
            # each held-out frame against each frame of each training clip: [b, F, t, F] -> nearest [b, F, t]
            nearest = hamming(block[:, :, None, None], train.hashes[cols][None, None]).min(axis=3)
            matched = (nearest <= protocol.max_distance).sum(axis=1)  # [b, t]
            for bi, ti in zip(*np.nonzero(matched >= need)):
                pairs.append((int(rows[bi]), int(cols[ti]), int(matched[bi, ti]), int(nearest[bi, :, ti].min())))
    return sorted(pairs)


# -- the check ---------------------------------------------------------------------------------------------------
def check_leakage(train_sets: Mapping[str, Sequence[ClipRef]], heldout_sets: Mapping[str, Sequence[ClipRef]],
                  config: LeakageConfig = LeakageConfig(), cache: Path | None = None) -> LeakageReport:
    """Every leak from each training set into each held-out set, by source video and by pHash (as ``config``
    switches them); clips without a ``path`` are left out of the hash check (counted in ``checked``). Call
    :meth:`LeakageReport.enforce` to refuse leaks."""
    protocol = config.protocol
    report = LeakageReport({"source_videos": config.source_videos, "phash": config.phash and dataclasses.asdict(
        protocol), "named_in_errors": MAX_NAMED})
    hashed: dict[str, tuple[ClipHashes, list[ClipRef]]] = {}
    for held_name, heldout in heldout_sets.items():
        for train_name, train in train_sets.items():
            record = {"heldout": held_name, "heldout_clips": len(heldout), "train": train_name,
                      "train_clips": len(train)}
            if config.source_videos:
                found = _shared_sources(heldout, train, held_name, train_name)
                record["source_video_leaks"] = len(found)
                report.leaks += found
            if config.phash:
                found = _hash_leaks(held_name, heldout, train_name, train, protocol, cache, hashed, record)
                record["near_duplicate_leaks"] = len(found)
                report.leaks += found
            report.checked.append(record)
    return report


def _shared_sources(heldout: Sequence[ClipRef], train: Sequence[ClipRef], held_name: str,
                    train_name: str) -> list[Leak]:
    first: dict[str, str] = {}
    for clip in train:
        first.setdefault(clip.source, clip.clip_id)
    return [Leak("source video", c.clip_id, held_name, first[c.source], train_name, f"both from video {c.source!r}")
            for c in heldout if c.source in first]


def _hash_leaks(held_name, heldout, train_name, train, protocol, cache, hashed, record) -> list[Leak]:
    for name, clips in ((held_name, heldout), (train_name, train)):
        if name not in hashed:
            with_path = [c for c in clips if c.path is not None]
            hashes = clip_hashes(with_path, protocol, cache)
            hashed[name] = (hashes, with_path)
            problems = list(hashes.problems)
            record.setdefault("undecodable", {})[name] = problems[:10] + (
                [f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
    (h_hashes, h_clips), (t_hashes, t_clips) = hashed[held_name], hashed[train_name]
    record["hashed"] = {held_name: len(h_clips), train_name: len(t_clips)}
    if not len(h_clips) or not len(t_clips):
        return []
    return [Leak("near-duplicate", h_clips[i].clip_id, held_name, t_clips[j].clip_id, train_name,
                 f"{matched} of {protocol.frames} frames within {protocol.max_distance} bits (closest {closest})")
            for i, j, matched, closest in near_duplicates(h_hashes, t_hashes, protocol)]
