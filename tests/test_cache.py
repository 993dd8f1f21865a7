"""Reference statistics cache: one key function over everything that made the statistics, hits logged and
numerically identical to misses, ``--no-cache`` bypasses, stale entries are never reused."""
from __future__ import annotations

import dataclasses
import logging
import os

import pytest

from benchmarks import cache
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics import get_protocol, protocol_for
from ophora.data.sets import load_video_set

from eval_sets import make_folder, make_generated


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def test_key_changes_with_every_input():
    fvd = get_protocol("fvd/stylegan-v")
    base = cache.reference_key("f" * 64, fvd, "a" * 64, 0)
    assert base == cache.reference_key("f" * 64, fvd, "a" * 64, 0) and len(base) == 64
    variants = [cache.reference_key("e" * 64, fvd, "a" * 64, 0), cache.reference_key("f" * 64, fvd, "b" * 64, 0),
                cache.reference_key("f" * 64, fvd, "a" * 64, 1),
                cache.reference_key("f" * 64, get_protocol("fvd/tf"), "a" * 64, 0),
                cache.reference_key("f" * 64, dataclasses.replace(fvd, version="2"), "a" * 64, 0),
                cache.reference_key("f" * 64, protocol_for("fid", frames_per_video=3), "a" * 64, 0)]
    assert len(set(variants + [base])) == len(variants) + 1
    assert cache.reference_path(base, fvd).parent == cache.stats_dir() == cache.cache_dir() / "stats"


def test_fingerprint_is_content_not_mtime(tmp_path):
    paths = make_folder(tmp_path / "real", 2, 8)
    first = cache.set_fingerprint(load_video_set(tmp_path / "real"))
    os.utime(paths[0], ns=(1, 1))
    assert cache.set_fingerprint(load_video_set(tmp_path / "real")) == first  # mtime alone: same content
    data = bytearray(paths[0].read_bytes())
    data[-1] ^= 0xFF  # same size, one byte different
    paths[0].write_bytes(bytes(data))
    assert cache.set_fingerprint(load_video_set(tmp_path / "real")) != first
    make_generated(tmp_path / "fake", 2, 8)
    manifest_set = cache.set_fingerprint(load_video_set(tmp_path / "fake"))
    (tmp_path / "fake" / "manifest.jsonl").write_text(
        (tmp_path / "fake" / "manifest.jsonl").read_text().replace("capsulorhexis", "Capsulorhexis"))
    assert cache.set_fingerprint(load_video_set(tmp_path / "fake")) != manifest_set  # manifest bytes count


def _run(root, caplog, **kw):
    options = {"metrics": ("fvd",), "tiny_i3d": True, "bootstrap": 10, "workers": 0, "progress": False, **kw}
    cfg = EvalConfig(str(root / "real"), str(root / "fake"), **options)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="benchmarks.cache"):
        metric = evaluate(cfg)["metrics"]["fvd"]
    return metric, caplog.text


def test_hit_is_identical_to_miss_and_changed_files_miss(tmp_path, caplog):
    """End to end: miss, hit (identical numbers), bypass, and a changed real file. The other key inputs
    (protocol, detector, seed) are covered by test_key_changes_with_every_input."""
    make_folder(tmp_path / "real", 5, 20, seed=0)
    make_generated(tmp_path / "fake", 4, 16, seed=1)
    miss, log = _run(tmp_path, caplog)
    assert "cache miss" in log and not miss["reference_cache"]["hit"]
    entry = miss["reference_cache"]["path"]
    assert entry.startswith(str(cache.stats_dir())) and os.path.isfile(entry)
    hit, log = _run(tmp_path, caplog)
    assert "cache hit" in log and hit["reference_cache"] == {**miss["reference_cache"], "hit": True}
    assert (hit["value"], hit["ci"], hit["n_real"]) == (miss["value"], miss["ci"], miss["n_real"])  # exact

    bypass, log = _run(tmp_path, caplog, no_cache=True)
    assert "cache" not in log and bypass["reference_cache"] == {"key": None, "hit": False, "path": None, "warnings": []}
    assert bypass["value"] == pytest.approx(miss["value"], rel=1e-12)
    assert len(os.listdir(cache.stats_dir())) == 1  # nothing written

    make_folder(tmp_path / "real", 1, 20, seed=9)  # rewrites vid_00.mp4 with other frames
    changed, log = _run(tmp_path, caplog)
    assert "cache miss" in log and changed["value"] != miss["value"]
    assert changed["reference_cache"]["key"] != miss["reference_cache"]["key"]
    assert len(os.listdir(cache.stats_dir())) == 2


def test_entry_without_rows_is_a_miss_when_rows_are_needed(tmp_path, caplog):
    make_folder(tmp_path / "real", 3, 16, seed=0)
    make_generated(tmp_path / "fake", 3, 16, seed=1)
    _run(tmp_path, caplog, bootstrap=0)
    _, log = _run(tmp_path, caplog, bootstrap=10)
    assert "holds no per-row features" in log
    _, log = _run(tmp_path, caplog, bootstrap=0)
    assert "cache hit" in log  # the entry now has rows and serves both


def test_fingerprint_of_frame_folders_follows_their_images(tmp_path):
    import numpy as np
    from PIL import Image

    for video in ("a", "b"):
        (tmp_path / "frames" / video).mkdir(parents=True)
        for t in range(3):
            Image.fromarray(np.full((8, 8, 3), 10 * t, np.uint8)).save(tmp_path / "frames" / video / f"{t}.png")
    first = cache.set_fingerprint(load_video_set(tmp_path / "frames"))
    assert cache.set_fingerprint(load_video_set(tmp_path / "frames")) == first
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(tmp_path / "frames" / "b" / "2.png")
    assert cache.set_fingerprint(load_video_set(tmp_path / "frames")) != first
