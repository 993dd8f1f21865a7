"""Corrupt, empty and too-short inputs are listed under ``failed`` with reasons and excluded from N; the run
goes on. ``--strict`` makes the first failure fatal, naming the file."""
from __future__ import annotations

import json

import pytest

from benchmarks.detectors.clip import TINY_MODEL
from benchmarks.evaluate import EvalConfig, evaluate, main
from benchmarks.features import FailedVideoError
from ophora.results import resolve_path

from eval_sets import make_folder, make_generated, write_manifest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def broken_sets(tmp_path):
    real = make_folder(tmp_path / "real", 5, [20, 20, 10, 20, 20], seed=0)  # vid_02: 10 frames, too short for FVD
    fake = make_generated(tmp_path / "fake", 4, 16, seed=1)
    good = fake[0].read_bytes()
    (tmp_path / "fake" / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (tmp_path / "fake" / "empty.mp4").write_bytes(b"")
    write_manifest(tmp_path / "fake", fake + [tmp_path / "fake" / "truncated.mp4", tmp_path / "fake" / "empty.mp4"])
    return tmp_path, real


def _config(root, **kw):
    base = dict(metrics=("fvd", "clipscore"), tiny_i3d=True, clip_model=TINY_MODEL, clip_frames=2, bootstrap=0,
                workers=0, progress=False, no_cache=True)
    return EvalConfig(str(root / "real"), str(root / "fake"), **{**base, **kw})


def test_failed_inputs_are_listed_and_excluded(broken_sets):
    root, real = broken_sets
    result = evaluate(_config(root, out=str(root / "out.json")))
    failed = {f["key"]: f for f in result["failed"]}
    assert set(failed) == {"truncated.mp4", "empty.mp4", "vid_02.mp4"}
    assert failed["empty.mp4"]["set"] == "fake" and "empty" in failed["empty.mp4"]["reason"]
    assert failed["empty.mp4"]["metrics"] == ["clipscore", "fvd"]
    assert failed["truncated.mp4"]["metrics"] == ["clipscore", "fvd"] and failed["truncated.mp4"]["reason"]
    short = failed["vid_02.mp4"]
    assert short["set"] == "real" and short["metrics"] == ["fvd"] and "has 10 frames" in short["reason"]
    assert short["path"] == str(real[2])  # in memory: the path as given
    fvd, clip = result["metrics"]["fvd"], result["metrics"]["clipscore"]
    assert (fvd["n_real"], fvd["n_fake"], clip["n_fake"]) == (4, 4, 4)
    assert fvd["value"] is not None and len(result["per_video"]["clipscore"]) == 4
    written = json.loads((root / "out.json").read_text())
    # the file holds no path of the machine: each is relative to its set's root and resolves back to the video
    assert [{**f, "path": None} for f in written["failed"]] == [{**f, "path": None} for f in result["failed"]]
    written_short = next(f for f in written["failed"] if f["key"] == "vid_02.mp4")
    assert written_short["path"] == "$real/vid_02.mp4"
    assert resolve_path(written_short["path"], written, root / "out.json") == real[2].resolve()


def test_strict_fails_naming_the_file(broken_sets, capsys):
    root, _ = broken_sets
    with pytest.raises(FailedVideoError, match=r"vid_02\.mp4: has 10 frames"):
        evaluate(_config(root, strict=True))
    make_folder(root / "real2", 3, 20, seed=5)
    args = ["--real", str(root / "real2"), "--fake", str(root / "fake"), "--metrics", "fvd", "--tiny-i3d",
            "--bootstrap", "0", "--workers", "0", "--quiet", "--strict", "--out", str(root / "strict.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "truncated.mp4" in err and "--strict" in err and not (root / "strict.json").exists()
