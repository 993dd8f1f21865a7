"""Scale-out: ``torchrun --nproc_per_node 2`` (gloo, CPU) gives the numbers of one process: statistics
all-reduced, rows, per-video scores and failures gathered in video order, only rank 0 writes; cache hits
are decided by rank 0 for every process. FVD (tiny I3D) and CLIPScore (tiny CLIP) stand for every metric:
FID and KID go through the same FrechetState statistics and row gathering as FVD."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from eval_sets import make_folder, make_generated, write_manifest

SCRIPT = Path(__file__).with_name("dist_eval_script.py")


def _launch(prefix: list[str], real: Path, fake: Path, out: Path, cache: Path) -> None:
    out.mkdir(parents=True)
    env = {**os.environ, "OPHORA_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(prefix + [str(SCRIPT), str(real), str(fake), str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo "
                    "is not available in this torch build, so torchrun cannot start a CPU process group")
@pytest.mark.slow
def test_two_processes_give_the_numbers_of_one(tmp_path):
    make_folder(tmp_path / "real", 5, [20, 18, 10, 22, 16], seed=0)  # vid_02 is too short for FVD
    fake = make_generated(tmp_path / "fake", 5, 16, seed=1)
    (tmp_path / "fake" / "empty.mp4").write_bytes(b"")
    write_manifest(tmp_path / "fake", fake + [tmp_path / "fake" / "empty.mp4"])
    _launch([sys.executable], tmp_path / "real", tmp_path / "fake", tmp_path / "one", tmp_path / "cache1")
    _launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
            tmp_path / "real", tmp_path / "fake", tmp_path / "two", tmp_path / "cache2")
    assert sorted(os.listdir(tmp_path / "two")) == ["hit.json", "miss.json"]  # written by rank 0 only

    one = json.loads((tmp_path / "one" / "miss.json").read_text())
    assert one["world_size"] == 1
    for name in ("miss", "hit"):
        two = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert two["world_size"] == 2
        for metric, expected in one["metrics"].items():
            got = two["metrics"][metric]
            assert got["value"] == pytest.approx(expected["value"], rel=1e-9), (name, metric)
            assert (got["ci"]["low"], got["ci"]["high"]) == pytest.approx(
                (expected["ci"]["low"], expected["ci"]["high"]), rel=1e-9), (name, metric)
            assert (got.get("n_real"), got["n_fake"]) == (expected.get("n_real"), expected["n_fake"]), (name, metric)
        assert [v["score"] for v in two["per_video"]["clipscore"]] == pytest.approx(
            [v["score"] for v in one["per_video"]["clipscore"]], rel=1e-12)
        assert [v["path"] for v in two["per_video"]["clipscore"]] == [p.name for p in fake]
        assert two["failed"] == one["failed"]
        assert {(f["set"], f["key"]) for f in two["failed"]} == {("real", "vid_02.mp4"), ("fake", "empty.mp4")}
        assert two["metrics"]["fvd"]["reference_cache"]["hit"] == (name == "hit")
