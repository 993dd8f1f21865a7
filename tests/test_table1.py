"""Table 1 end to end: the quick config's whole flow (six rows, three metrics), its files, caches and errors."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from benchmarks.table1 import PreflightError, load_table1_config, render, run_table1
from benchmarks.table1.preflight import preflight
from ophora.configs import ConfigError
from ophora.data.bundled import resolve_path
from ophora.tables import best

pytestmark = pytest.mark.slow  # every test here shares a run of more than 5 s

ROWS = ["Endora", "Endora (w/ Ophora-160K)", "Bora", "Bora (w/ Ophora-160K)", "Ophora (TPT-only)", "Ophora"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory, torch_one_thread):
    """The quick config run once into a temporary cache and output (about two minutes on 2 cores)."""
    root = tmp_path_factory.mktemp("table1")
    lines: list[str] = []
    config = load_table1_config("quick")
    payload = run_table1(config, root / "cache", root / "out", progress=False, log=lines.append)
    return config, root, payload, lines


@pytest.mark.slow
def test_quick_flow_has_six_rows_and_three_metrics(quick):
    _, root, payload, _ = quick
    assert [r["name"] for r in payload["rows"]] == ROWS
    for row in payload["rows"]:
        for metric in ("fid", "fvd"):
            value = row["metrics"][metric]["value"]
            assert value is not None and value >= 0 and value < 1e6, (row["name"], metric, value)
        if row["name"].startswith("Endora"):
            assert not row["conditional"] and "clipscore" not in row["metrics"]
        else:
            assert row["conditional"] and 0 <= row["metrics"]["clipscore"]["value"] <= 100
    # training stages are shared where their inputs are equal: both Ophora rows use one TPT model
    tpt_models = [r["training"][0]["model"] for r in payload["rows"] if r["generator"] == "ophora"]
    assert tpt_models[0] == tpt_models[1]
    assert payload["data_records"]["curation"]["ophora_160k"] >= payload["data_records"]["curation"]["ophora_28k"]


@pytest.mark.slow
def test_table_files_parse_and_agree_with_results_json(quick):
    _, root, payload, _ = quick
    out = root / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?",
                                                                        results["provenance"]["git_commit"])
    assert results["config"]["name"] == "quick" and results["seed"] == 0
    by_name = {r["name"]: r for r in results["rows"]}
    with open(out / "table.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["model"] for r in table] == ROWS
    for line in table:
        row = by_name[line["model"]]
        for metric in ("fid", "fvd", "clipscore"):
            m = row["metrics"].get(metric)
            if m is None:
                assert line[metric] == ""
                continue
            assert float(line[metric]) == pytest.approx(m["value"], rel=1e-12)
            assert float(line[f"{metric}_low"]) == pytest.approx(m["ci"]["low"], rel=1e-12)
            assert int(line[f"{metric}_n"]) == m["n_fake"]
    markdown = (out / "table.md").read_text()
    md_rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(md_rows) == 6
    header = [cell.strip() for cell in next(line for line in markdown.splitlines()
                                            if line.startswith("| model")).strip("|").split("|")]
    endora = [cell.strip() for cell in next(line for line in md_rows if line.startswith("| Endora |")).strip("|")
              .split("|")]
    assert endora[header.index("CLIPScore ↑")] == "-"  # no CLIPScore for the unconditional model
    assert endora[header.index("videos from")] == "trained here (tiny preset): the raw narrated set"
    assert table[0]["origin"] == by_name["Endora"]["origin"] == endora[header.index("videos from")]
    # the surgical columns: the shipped detectors beside the published protocols, recorded with their protocol
    assert {"FID (surgical) ↓", "FVD (surgical) ↓", "CLIPScore (surgical) ↑", "R@1 (surgical) ↑"} <= set(header)
    assert endora[header.index("R@1 (surgical) ↑")] == "-"  # no prompts followed: no retrieval
    assert results["protocols"]["surgical_fvd"]["name"] == "fvd/ophsim-surgical"
    assert results["detectors"]["surgical_fvd"]["identifier"].startswith("ophsim-surgical:")
    for line in table:
        assert float(line["surgical_fvd"]) == pytest.approx(by_name[line["model"]]["metrics"]["surgical_fvd"]["value"])
    fid_best = min(by_name.values(), key=lambda r: r["metrics"]["fid"]["value"])
    assert f"**{fid_best['metrics']['fid']['value']:.2f}**" in markdown
    tex = (out / "table.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("\\\\") == 7
    for image in ("frame_grid.png", "metrics.png"):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_beyond_the_paper_table_is_written_beside_table1(quick):
    """The quick config's metrics.beyond: one more table (FVMD, KVMD, KVD on the surgical video features, tiny
    random-init cd-FVD and JEDi) in its own files and results.json key, computed on the same N as Table 1."""
    _, root, payload, _ = quick
    out = root / "out"
    keys = [c["key"] for c in payload["beyond"]["columns"]]
    assert keys == ["fvmd_opencv_lk", "kvmd", "kvd_on_fvd_ophsim_surgical", "fvd_videomae", "jedi_v_jepa2"]
    assert payload["beyond"]["protocols"]["kvd_on_fvd_ophsim_surgical"]["name"] == "kvd"
    assert payload["beyond"]["detectors"]["fvmd_opencv_lk"]["identifier"].startswith("opencv-lk:")
    for row in payload["rows"]:
        assert set(row["beyond"]["metrics"]) == set(keys) and not set(keys) & set(row["metrics"])
        for key, m in row["beyond"]["metrics"].items():
            assert m["value"] is not None and abs(m["value"]) < 1e6, (row["name"], key)
            assert m["n_fake"] == row["metrics"]["fvd"]["n_fake"] == 6 and m["ci"]["low"] <= m["value"]
        assert row["beyond"]["metrics"]["fvmd_opencv_lk"]["value"] > 0
    with open(out / "table_beyond.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["model"] for line in lines] == ROWS
    assert float(lines[0]["kvmd"]) == pytest.approx(payload["rows"][0]["beyond"]["metrics"]["kvmd"]["value"])
    assert "| model | FVMD (LK tracker) ↓ |" in (out / "table_beyond.md").read_text()
    assert "FVMD" not in (out / "table.md").read_text()  # Table 1's own files do not change
    assert '<section id="beyond">' in (out / "report.html").read_text()


@pytest.mark.slow
def test_rerun_hits_every_cache_and_gives_the_same_numbers(quick):
    config, root, payload, first_log = quick
    lines: list[str] = []
    again = run_table1(config, root / "cache", root / "out2", progress=False, log=lines.append)
    assert again["cache"]["hits"] and all(again["cache"]["hits"].values()), again["cache"]["hits"]
    assert not any(line.startswith("[run]") for line in lines)
    for a, b in zip(payload["rows"], again["rows"]):
        for metric, m in a["metrics"].items():
            assert b["metrics"][metric]["value"] == m["value"]


def test_a_moved_cache_is_reused_and_scores_the_same(quick, tmp_path):
    """Stage records keep paths relative to the cache: a cache copied elsewhere (the original out of reach)
    reuses every trained model and generated set, and evaluating again from the copy gives the same numbers."""
    import shutil

    config, root, payload, _ = quick
    moved = shutil.copytree(root / "cache", tmp_path / "moved")
    for done in moved.glob("evaluate*/*/done.json"):  # published, surgical and beyond-the-paper passes
        done.unlink()  # evaluate again: read the moved real clips and generated videos
    hidden = root / "cache-away"
    (root / "cache").rename(hidden)
    try:
        lines: list[str] = []
        again = run_table1(config, moved, tmp_path / "out", progress=False, log=lines.append)
    finally:
        hidden.rename(root / "cache")
    ran = [line for line in lines if line.startswith("[run]")]
    assert ran and all(line.split()[1].startswith(("evaluate/", "evaluate-surgical/", "evaluate-beyond/"))
                       for line in ran), ran
    for a, b in zip(payload["rows"], again["rows"]):
        for metric, m in a["metrics"].items():
            assert b["metrics"][metric]["value"] == pytest.approx(m["value"], rel=1e-9), (a["name"], metric)


def test_evaluation_stages_key_on_the_shipped_detectors_digests(quick, monkeypatch):
    """New surgical weights must never be scored from an old cache: every evaluation stage's key covers the
    sha256 of the detectors shipped in the package."""
    import dataclasses

    from ophora import weights as W

    config, root, payload, _ = quick
    records = [json.loads(p.read_text()) for p in (root / "cache").glob("evaluate*/*/done.json")]
    assert {r["inputs"]["shipped"]["ophsim-surgical:video"] for r in records} == \
        {W.get_entry("ophsim-surgical:video").sha256}
    before = W.shipped_digests()
    entry = W.REGISTRY["ophsim-surgical:video"]
    monkeypatch.setitem(W.REGISTRY, entry.name, dataclasses.replace(entry, sha256="0" * 64))
    assert W.shipped_digests() != before and set(W.shipped_digests()) == set(before)


@pytest.mark.slow
def test_a_run_killed_while_training_resumes_to_the_same_numbers(quick, tmp_path):
    """Simulate a kill during Ophora's P2FT: no final model, only its first checkpoint, no videos of that row, no
    done.json from there on. The rerun resumes training and gives the same numbers as the uninterrupted run."""
    import shutil

    config, root, payload, _ = quick
    cache = root / "cache"  # in place (run folders record absolute paths); the rerun below completes it again
    p2ft = next(cache.glob("train/ophora-p2ft-*"))
    (p2ft / "done.json").unlink()
    shutil.rmtree(p2ft / "run" / "model")
    checkpoints = sorted((p2ft / "run" / "checkpoints").iterdir())
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    for done in cache.glob("generate/ophora-*/done.json"):
        if "p2ft" in json.loads(done.read_text())["record"]["model"]:
            shutil.rmtree(done.parent)
    for done in cache.glob("evaluate/*/done.json"):
        done.unlink()
    lines: list[str] = []
    again = run_table1(config, cache, tmp_path / "out", progress=False, log=lines.append)
    assert any(line.startswith("[run]    train/ophora-p2ft") for line in lines)
    assert not any(line.startswith("[run]    train/ophora-tpt") or "endora" in line and "[run]    train" in line
                   for line in lines)
    for a, b in zip(payload["rows"], again["rows"]):
        for metric, m in a["metrics"].items():
            assert b["metrics"][metric]["value"] == m["value"], (a["name"], metric)


@pytest.mark.slow
def test_an_external_row_scores_videos_from_official_code(quick, tmp_path):
    """A row whose videos come from an official repository: the quick run's Bora videos as a plain mp4 folder
    with a `video,prompt` mapping; scored like the generated row they came from, CLIPScore included."""
    import shutil

    config, root, payload, _ = quick
    bora = next(r for r in payload["rows"] if r["name"] == "Bora")
    official = tmp_path / "bora_official"
    official.mkdir()
    lines = ["video,prompt"]
    for record in (json.loads(line) for line in (Path(bora["videos"]) / "manifest.jsonl").read_text().splitlines()):
        shutil.copy(Path(bora["videos"]) / record["path"], official / record["path"])
        lines.append(f'{record["path"]},"{record["prompt"]}"')
    (tmp_path / "prompts.csv").write_text("\n".join(lines) + "\n")
    raw = yaml.safe_load(resolve_path(config.source).read_text())
    raw = {k: v for k, v in raw.items() if not k.startswith(".")}
    raw.update(name="quick-external", rows=[{"name": "Bora (official code)", "external": str(official),
                                             "external_prompts": str(tmp_path / "prompts.csv")}])
    (tmp_path / "external.yaml").write_text(yaml.safe_dump(raw))
    result = run_table1(load_table1_config(tmp_path / "external.yaml"), root / "cache", tmp_path / "out",
                        progress=False, log=lambda line: None)
    row = result["rows"][0]
    assert row["conditional"] and row["external"] == str(official)
    for metric in ("fid", "fvd", "clipscore"):
        assert row["metrics"][metric]["value"] == pytest.approx(bora["metrics"][metric]["value"], rel=1e-9), metric
    assert (tmp_path / "out" / "table.md").read_text().count("| Bora (official code) |") == 1


def test_render_marks_best_per_direction_and_dashes():
    results = [
        {"name": "A", "metrics": {"fid": {"value": 10.0, "n_fake": 4, "ci": {"low": 9.0, "high": 11.0}},
                                  "clipscore": {"value": 30.0, "n_fake": 4}}},
        {"name": "B", "metrics": {"fid": {"value": 12.0, "n_fake": 4}}},
        {"name": "C", "metrics": {"fid": {"value": 11.0, "n_fake": 4}, "clipscore": {"value": 31.0, "n_fake": 4}},
         "published": {"fid": 42.16}},
    ]
    rows = render.table_rows(results, ["fid", "clipscore"])
    table = render.table(rows, ["fid", "clipscore"])
    fid, clipscore = table.columns[1:3]
    assert (fid.better, clipscore.better) == ("lower", "higher")
    assert best(table, fid) == 10.0 and best(table, clipscore) == 31.0


def test_render_files(tmp_path):
    results = [
        {"name": "A", "metrics": {"fid": {"value": 10.0, "n_fake": 4, "ci": {"low": 9.0, "high": 11.0}},
                                  "clipscore": {"value": 30.0, "n_fake": 4}}},
        {"name": "B_x", "metrics": {"fid": {"value": 12.0, "n_fake": 4}}, "published": {"fid": 60.5}},
    ]
    rows = render.table_rows(results, ["fid", "clipscore"])
    md = render.write_markdown(tmp_path / "t.md", rows, ["fid", "clipscore"], ["note"]).read_text()
    assert "| model | FID ↓ | CLIPScore ↑ | FID (paper) |" in md  # a paper column only where the paper has numbers
    assert "| A | **10.00** [9.00, 11.00] | **30.00** | - |" in md
    assert "| B_x | 12.00 | - | 60.5 |" in md
    tex = render.write_latex(tmp_path / "t.tex", rows, ["fid", "clipscore"], "cap").read_text()
    assert r"B\_x & 12.00 & - & 60.5 \\" in tex and r"\textbf{10.00}" in tex


def _write(tmp_path: Path, changes: dict) -> Path:
    raw = yaml.safe_load(resolve_path(load_table1_config("quick").source).read_text())
    raw = {k: v for k, v in raw.items() if not k.startswith(".")}
    raw.update(changes)
    path = tmp_path / "table1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"promts: unknown key.*did you mean 'prompts'"):
        load_table1_config(_write(tmp_path, {"promts": {}}))
    with pytest.raises(ConfigError, match=r"rows\[0\]\.generator: unknown generator 'ophra'.*did you mean 'ophora'"):
        load_table1_config(_write(tmp_path, {"rows": [{"name": "x", "generator": "ophra",
                                                       "train": [{"data": "ophora_160k"}]}]}))
    with pytest.raises(ConfigError, match=r"rows\[0\]\.train\[0\]\.data: unknown data set 'ophora_160'"):
        load_table1_config(_write(tmp_path, {"rows": [{"name": "x", "generator": "ophora",
                                                       "train": [{"data": "ophora_160"}]}]}))
    with pytest.raises(ConfigError, match=r"rows\[0\]: row 'x' needs exactly one of train, checkpoint or external"):
        load_table1_config(_write(tmp_path, {"rows": [{"name": "x", "generator": "ophora", "checkpoint": "m",
                                                       "train": [{"data": "ophora_160k"}]}]}))
    with pytest.raises(ConfigError, match="unknown Table 1 config 'dmeo'.*did you mean 'demo'"):
        load_table1_config("dmeo")


def test_paper_preflight_names_every_missing_asset(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)
    config = load_table1_config("paper")
    missing = preflight(config)
    text = "\n".join(f"{m.asset} | {m.expected} | {m.how}" for m in missing)
    for expected in ("data set 'ophora_160k'", "data set 'real'", "row 'Endora': videos from the official code",
                     "row 'Bora': prompt mapping", "row 'Ophora (TPT-only)': trained model",
                     "row 'Ophora': trained model", "row 'Endora (w/ Ophora-160K)': prior weights (dino-vits8)",
                     "row 'Bora (w/ Ophora-160K)': text weights (t5-v1_1-xxl)",
                     "fid detector weights", "fvd detector weights", "clipscore detector weights",
                     "python -m ophora.weights fetch stylegan-v-i3d",
                     "/data/ophora/Ophora-160K/instructions.csv", "runs/paper/p2ft/model"):
        assert expected in text, expected
    with pytest.raises(PreflightError, match="cannot start"):
        run_table1(config, tmp_path / "c", tmp_path / "o", progress=False, log=lambda line: None)
    assert not (tmp_path / "c").exists() and not (tmp_path / "o").exists()
