"""ophora.results: provenance that says what a number depends on, result files without machine paths, and the
comparison that says whether two result files agree."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ophora.results import Tolerance, compare_results, main, provenance, relative_paths, resolve_path, write_json


def test_provenance_records_cpu_model_torch_capability_threads_and_every_distribution():
    record = provenance()
    assert record["cpu_model"] and record["cpu_count"] == os.cpu_count()
    assert record["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["distributions"]["torch"] == torch.__version__.split("+")[0]
    assert record["distributions"]["numpy"] == record["packages"]["numpy"]


def test_result_files_name_paths_relative_to_their_roots(tmp_path):
    work, cache, out = tmp_path / "runs" / "demo", tmp_path / "cache", tmp_path / "results" / "demo"
    payload = {"videos": str(work / "generate" / "videos"), "stats": [str(cache / "stats" / "fid.npz")],
               "config_file": str(tmp_path / "configs" / "demo.yaml"), "text": "a prompt, not a path",
               "nested": {"root": str(work)}}
    path = write_json(out / "results.json", payload, config={"out": out}, roots={"$work": work, "$cache": cache})
    document = json.loads(path.read_text())
    assert document["videos"] == "$work/generate/videos" and document["nested"]["root"] == "$work"
    assert document["stats"] == ["$cache/stats/fid.npz"]
    assert document["config_file"] == "../../configs/demo.yaml"  # under no root: relative to the file's folder
    assert document["config"]["out"] == "." and document["text"] == "a prompt, not a path"
    assert document["roots"] == {"$work": "../../runs/demo", "$cache": "../../cache"}
    assert str(tmp_path) not in path.read_text()
    for key, original in (("videos", work / "generate" / "videos"), ("config_file", tmp_path / "configs/demo.yaml")):
        assert resolve_path(document[key], document, path) == original
    moved = tmp_path / "elsewhere"
    assert resolve_path("$cache/stats/fid.npz", document, path, roots={"$cache": moved}) == moved / "stats/fid.npz"


def test_the_deepest_root_wins_and_a_root_outside_the_tree_is_named_only():
    document = relative_paths({"a": "/srv/x/runs/inner/file"}, {"$x": "/srv/x", "$inner": "/srv/x/runs/inner"},
                              "/home/user/results")
    assert document["a"] == "$inner/file"
    assert document["roots"] == {"$inner": None, "$x": None}
    with pytest.raises(KeyError, match=r"\$inner"):
        resolve_path(document["a"], document, "/home/user/results/results.json")


def _table(fvd: float, fid: float = 3.63) -> dict:
    return {"provenance": {"created_utc": "now"}, "timings_s": {"total": 100.0},
            "rows": [{"name": "Endora", "fid": {"value": fid, "n": 24}, "fvd": {"value": fvd, "n": 24}}]}


def test_compare_identical_within_and_outside_tolerance():
    same = compare_results(_table(27.82), {**_table(27.82), "provenance": {"created_utc": "later"},
                                           "timings_s": {"total": 5.0}})
    assert same.identical and same.numbers == 4
    close = compare_results(_table(28.16), _table(27.82), Tolerance(rtol=0.02))
    assert not close.identical and close.failures == [] and close.differing == 1
    assert close.worst == "rows[0].fvd.value" and abs(close.max_rel - 0.34 / 27.82) < 1e-12
    far = compare_results(_table(21.50), _table(27.82), Tolerance(rtol=0.02))
    assert far.failures == ["rows[0].fvd.value: 21.5 vs 27.82"]
    renamed = compare_results({"rows": [{"name": "Bora"}]}, {"rows": [{"name": "Endora"}]})
    assert renamed.failures == ["rows[0].name: 'Bora' vs 'Endora'"]


def test_compare_command_exit_status_says_whether_files_agree(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_table(28.16)))
    b.write_text(json.dumps(_table(27.82)))
    assert main(["compare", str(a), str(b)]) == 1
    assert "NOT within tolerance" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--rtol", "0.02"]) == 0
    assert "within tolerance (rtol=0.02" in capsys.readouterr().out
    assert main(["compare", str(a), str(a)]) == 0
    assert "identical" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--ignore", "fvd"]) == 0
    assert "identical: 2 numbers" in capsys.readouterr().out
    assert main(["compare", str(a), str(Path(tmp_path / "missing.json"))]) == 2
    assert "missing.json" in capsys.readouterr().err
