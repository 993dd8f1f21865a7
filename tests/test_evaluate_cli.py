"""``python -m benchmarks.evaluate`` on an OphSim real set against an OphSim fake set with every metric writes
a self-describing JSON: config, protocols, detectors, N, values, intervals, per-video scores, failures,
timings, commit and package versions."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest

from benchmarks.evaluate import main
from ophora.data.manifests import GeneratedVideo, read_instruction_set, write_generated, write_instruction_set


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


CLIPS = 8  # of the 12 phase clips of one simulated surgery (detector time is most of this test)


def _ophsim(out, seed):
    """An OphSim world's Ophora-160K set, cut to its first CLIPS clips (written as ``first.csv``)."""
    subprocess.run([sys.executable, "-m", "ophora.sim", "--out", str(out), "--videos", "1", "--seed", str(seed),
                    "--frames", "18", "--size", "64x64", "--quiet"], check=True, capture_output=True)
    folder = out / "ophora_instructions"
    return write_instruction_set(folder / "first.csv", read_instruction_set(folder / "instructions.csv")[:CLIPS])


def _as_generated(csv, folder):
    """A generated-video folder (manifest.jsonl) holding the clips of an Ophora-160K set, prompts = instructions."""
    records = []
    for i, clip in enumerate(read_instruction_set(csv)):
        target = folder / "videos" / clip.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip.path, target)
        records.append(GeneratedVideo(target, clip.instruction, i, "ophsim-world-1", "0" * 12, {"fps": 8}))
    write_generated(folder, records)


@pytest.mark.slow
def test_cli_scores_ophsim_sets_with_every_metric(tmp_path, capsys):
    real_csv = _ophsim(tmp_path / "world0", 0)
    _as_generated(_ophsim(tmp_path / "world1", 1), tmp_path / "fake")
    out = tmp_path / "results" / "eval.json"
    code = main(["--real", str(real_csv), "--fake", str(tmp_path / "fake"), "--metrics", "fid,fvd,clipscore,kid",
                 "--fid-frames", "1", "--clip-frames", "2", "--clip-model", "ophora-tiny-clip", "--tiny-i3d",
                 "--bootstrap", "20", "--workers", "2", "--batch-size", "4", "--seed", "3", "--quiet",
                 "--weights", "random-init", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in ("fid", "fvd", "clipscore", "kid")) and "not comparable" in printed

    result = json.loads(out.read_text())
    assert result["format"] == "ophora-eval/1" and result["seed"] == 3 and result["world_size"] == 1
    assert result["config"]["metrics"] == ["fid", "fvd", "clipscore", "kid"] and result["config"]["bootstrap"] == 20
    provenance = result["provenance"]
    assert "git_commit" in provenance and provenance["packages"]["torch"] and provenance["created_utc"]
    assert result["inputs"]["real"]["kind"] == "instructions" and result["inputs"]["fake"]["kind"] == "generated"
    assert len(result["inputs"]["real"]["fingerprint"]) == 64
    assert "protocols" not in result  # each protocol is written once, under its metric
    assert result["metrics"]["fvd"]["protocol"]["name"] == "fvd/stylegan-v"
    assert result["metrics"]["fid"]["protocol"]["frames_per_video"] == 1
    assert result["geometry"]["name"] == "native" and result["n"]["real"] == result["n"]["fake"] == CLIPS
    assert result["detector_choice"] == {}  # --weights random-init: nothing chosen for the user
    assert result["comparable_with_literature"] is False
    for view, detector in result["detectors"].items():
        assert len(detector["sha256"]) == 64 and detector["comparable_with_literature"] is False, view
        assert "comparable" not in detector, view  # one field, one name
    for name, metric in result["metrics"].items():
        assert math.isfinite(metric["value"]) and metric["n_fake"] == CLIPS, name
        assert metric["ci"]["low"] <= metric["ci"]["high"] and metric["ci"]["level"] == 0.95, name
        assert metric["protocol"]["metric"] == name and metric["detector"]["sha256"], name
    for name in ("fid", "fvd", "kid"):
        assert result["metrics"][name]["n_real"] == CLIPS
    assert not result["metrics"]["fid"]["reference_cache"]["hit"]
    assert result["metrics"]["kid"]["features_protocol"] == {"name": "fid/pytorch-fid",
                                                             "recorded_under": "metrics.fid.protocol"}
    per_video = result["per_video"]["clipscore"]
    assert len(per_video) == CLIPS
    assert all({"path", "prompt", "score", "tokens", "truncated"} <= set(v) for v in per_video)
    assert result["failed"] == []
    assert {"load_detectors", "extract_real", "extract_fake", "metrics", "total"} <= set(result["timings_s"])
    # no path of this machine: inputs relative to their roots, the roots relative to the result file
    assert str(tmp_path) not in out.read_text()
    assert result["inputs"]["real"]["root"] == "$real" and result["roots"]["$real"] == "../world0/ophora_instructions"
    assert result["inputs"]["fake"]["root"] == "$fake" and result["roots"]["$fake"] == "../fake"
