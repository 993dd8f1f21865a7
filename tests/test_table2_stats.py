"""Table 2's statistics, published numbers, prompts and leakage check: seed summaries and paired tests agree with
independent references, the rendered table shows mean ± std (or the clip interval) and p-values, the paper's
certain numbers are recorded and the rest marked illegible, prompts follow Ophora's released phase template, and
a val/test patient's clips reaching a generator are refused."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from downstream import synthetic
from downstream.metrics import topk_correct
from downstream.table2.config import load_config
from downstream.table2.render import FIGURE_NAME, figure_bars, notes, render, table_frame, window_notes
from downstream.table2.stats import (
    clip_correctness,
    clip_interval,
    mcnemar_exact,
    paired_bootstrap,
    seed_summary,
    table_statistics,
)
from ophora.configs import ConfigError
from ophora.data.leakage import LeakageError
from ophora.generation.prompts import read_prompts

# -- statistics ------------------------------------------------------------------------------------------------


def test_seed_summary_is_mean_sample_std_and_t_interval():
    summary = seed_summary([40.0, 42.0, 47.0])
    assert summary["mean"] == pytest.approx(43.0) and summary["std"] == pytest.approx(np.std([40, 42, 47], ddof=1))
    low, high = scipy_stats.t.interval(0.95, 2, loc=43.0, scale=summary["std"] / math.sqrt(3))
    assert summary["ci95_seeds"] == pytest.approx([low, high]) and summary["per_seed"] == [40.0, 42.0, 47.0]
    assert summary["ci95_seeds_clipped"] is False
    one = seed_summary([25.0])
    assert one["mean"] == 25.0 and one["std"] is None and one["ci95_seeds"] is None and one["n"] == 1
    wide = seed_summary([2.0, 95.0])  # two seeds far apart: the raw t-interval spans about [-542, 639]
    assert wide["ci95_seeds"] == [0.0, 100.0] and wide["ci95_seeds_clipped"] is True


def test_mcnemar_exact_matches_scipy_binomtest():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.random(80) < 0.4, rng.random(80) < 0.55
        result = mcnemar_exact(a, b)
        discordant = result["b_source_only"] + result["c_other_only"]
        reference = scipy_stats.binomtest(result["c_other_only"], discordant, 0.5).pvalue
        assert result["p"] == pytest.approx(reference)
    assert mcnemar_exact(np.ones(5, bool), np.ones(5, bool))["p"] == 1.0


def test_paired_bootstrap_finds_a_real_gain_and_no_gain_between_equal_rows():
    rng = np.random.default_rng(1)
    source = rng.random((2, 200)) < 0.3
    better = source | (rng.random((2, 200)) < 0.3)  # right wherever the source is, and on ~20% more clips
    result = paired_bootstrap(source, better, 2000, seed=0)
    delta = 100 * (better.mean() - source.mean())
    assert result["delta"] == pytest.approx(delta) and result["p"] < 0.01
    assert result["ci95"][0] < delta < result["ci95"][1] and result["ci95"][0] > 0
    # normal approximation of the interval of a mean of paired differences
    d = 100 * (better.mean(axis=0) - source.mean(axis=0))
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert result["ci95"] == pytest.approx([delta - half, delta + half], abs=0.35 * half)
    same = paired_bootstrap(source, source.copy(), 500, seed=0)
    assert same["delta"] == 0.0 and same["p"] == 1.0
    assert paired_bootstrap(source, better, 2000, seed=0) == result  # seeded
    with pytest.raises(ValueError, match="same clips"):
        paired_bootstrap(source, better[:, :10], 10, seed=0)


def test_a_noisy_difference_is_not_significant():
    rng = np.random.default_rng(2)
    source, other = rng.random((1, 48)) < 0.3, rng.random((1, 48)) < 0.33
    assert paired_bootstrap(source, other, 2000, seed=0)["p"] > 0.05


def test_clip_interval_covers_the_accuracy():
    correct = np.random.default_rng(3).random((1, 100)) < 0.4
    low, high = clip_interval(correct, 1000, seed=0)
    assert low < 100 * correct.mean() < high and high - low < 25


def _write_eval(run_dir: Path, split: str, scores: np.ndarray, labels: np.ndarray, ok: np.ndarray | None = None):
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    ok = np.ones(len(labels), bool) if ok is None else ok
    np.savez(run_dir / "eval" / f"{split}.npz", scores=scores, labels=labels, rows=np.arange(len(labels)) + 100,
             ok=ok)


def test_clip_correctness_is_the_cells_topk_on_decoded_clips(tmp_path):
    rng = np.random.default_rng(4)
    scores, labels = rng.random((30, 12)), rng.integers(0, 12, 30)
    ok = np.ones(30, bool)
    ok[3] = False
    _write_eval(tmp_path, "test", scores, labels, ok)
    for k in (1, 5):
        correct = clip_correctness(tmp_path, "test", k)
        expected = topk_correct(scores, labels, k)
        assert 103 not in correct and len(correct) == 29
        assert all(correct[100 + i] == expected[i] for i in range(30) if i != 3)


# -- a fake Table 2: cells, statistics, rendering ---------------------------------------------------------------


def _fake_payload(tmp_path: Path, seeds: list[int], config) -> dict:
    """Cells of every (row, classifier, task, seed) of ``config`` with eval files: the "+" rows right on more
    clips than the source row."""
    cells = []
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 12, 48)
    for r, row in enumerate(config.rows):
        for classifier in config.classifiers:
            for task in config.tasks:
                for seed in seeds:
                    run_dir = tmp_path / f"{r}-{classifier.label}-{task}-{seed}"
                    splits = {}
                    for split in ("val", "test"):
                        scores = rng.random((48, 12))
                        boost = rng.random(48) < 0.15 * (r + 1)
                        scores[np.arange(48)[boost], labels[boost]] += 2
                        _write_eval(run_dir, split, scores, labels)
                        splits[split] = {"top1": float(topk_correct(scores, labels, 1).mean()),
                                         "top5": float(topk_correct(scores, labels, 5).mean())}
                    cells.append({"row": row.label, "classifier": classifier.label, "task": task, "seed": seed,
                                  "status": "ok", "reason": "", "run_dir": str(run_dir),
                                  "results": {"splits": splits}})
    return {"cells": cells, "seeds": seeds, "leakage": {"leaks": 0, "checked": [{}, {}]},
            "statistics": table_statistics(cells, config.rows, config.classifiers, config.tasks, ("val", "test"),
                                           500, 0)}


@pytest.fixture
def paper():
    return load_config("paper")


def test_statistics_pair_every_synthetic_row_with_the_source_row(tmp_path, paper):
    payload = _fake_payload(tmp_path, [0, 1, 2], paper)
    stats = payload["statistics"]
    assert stats["source_row"] == "OphNet (source only)" and "McNemar" in stats["test"]
    entries = stats["cells"]
    assert len(entries) == 3 * 2 * 2 * 2 * 2  # rows x classifiers x tasks x splits x metrics
    for entry in entries:
        assert entry["seeds"] == [0, 1, 2] and entry["std"] is not None and len(entry["ci95_seeds"]) == 2
        mean_of_cells = np.mean([100 * c["results"]["splits"][entry["split"]][entry["metric"]]
                                 for c in payload["cells"] if (c["row"], c["classifier"], c["task"]) ==
                                 (entry["row"], entry["classifier"], entry["task"])])
        assert entry["mean"] == pytest.approx(mean_of_cells)
        if entry["row"] == "OphNet (source only)":
            assert "vs_source" not in entry
        else:
            versus = entry["vs_source"]
            assert versus["source_row"] == "OphNet (source only)" and versus["clips"] == 48
            assert [m["seed"] for m in versus["mcnemar"]] == [0, 1, 2] and 0 < versus["p"] <= 1
            source = next(e for e in entries if (e["row"], e["classifier"], e["task"], e["split"], e["metric"]) ==
                          ("OphNet (source only)", entry["classifier"], entry["task"], entry["split"],
                           entry["metric"]))
            assert versus["delta"] == pytest.approx(entry["mean"] - source["mean"])


def test_the_table_shows_mean_std_p_values_and_the_papers_numbers(tmp_path, paper):
    payload = _fake_payload(tmp_path / "runs", [0, 1, 2], paper)
    frame = table_frame(payload, paper)
    paths = render(frame, paper, tmp_path / "out", notes(payload, paper))
    markdown = paths["md"].read_text()
    lines = {line.split(" | ")[1]: line for line in markdown.splitlines() if line.startswith("| MViTv2")}
    source, ophora = lines["OphNet (source only)"], lines["OphNet + Ophora"]
    assert " ± " in source and "(p=" not in source and "(p" in ophora and " ± " in ophora
    assert "| 37.92 |" in lines["OphNet (source only) (paper)"] and "| 42.24 |" in lines["OphNet + Ophora (paper)"]
    assert lines["OphNet + Bora (paper)"].count("illegible") == 8
    slowfast_paper = next(line for line in markdown.splitlines() if line.startswith("| SlowFast | OphNet (source "
                                                                                      "only) (paper)"))
    assert "34.55 (uncertain)" in slowfast_paper and slowfast_paper.count("illegible") == 4
    assert "3 seeds (0, 1, 2): mean ± std" in markdown and "paired bootstrap" in markdown
    tex = paths["tex"].read_text()
    assert r"$\pm$" in tex and r"{\scriptsize(p=" in tex or r"{\scriptsize(p$<$" in tex
    table = pd.read_csv(paths["csv"])
    measured = table[table["kind"] == "measured"]
    assert measured["phase test top-1 p bootstrap"].notna().sum() == 4  # 2 classifiers x 2 "+" rows
    assert measured["phase test top-1 ci95 seeds low"].notna().all()
    mvit = measured[(measured["classifier"] == "MViTv2") & (measured["training data"] == "OphNet + Ophora")]
    assert float(mvit["phase test top-1 paper"].iloc[0]) == 42.24


def test_one_seed_shows_the_clip_interval_and_mcnemar(tmp_path, paper):
    payload = _fake_payload(tmp_path / "runs", [0], paper)
    frame = table_frame(payload, paper)
    markdown = render(frame, paper, tmp_path / "out", notes(payload, paper))["md"].read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| SlowFast | OphNet + Ophora |"))
    assert row.count("[") == 8 and " ± " not in row and row.count("(p") == 8
    assert "one seed (0): value [95% bootstrap interval" in markdown
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert table.loc[table["kind"] == "measured", "phase test top-1 p mcnemar"].notna().sum() == 4


@pytest.mark.slow  # two fake payloads and a matplotlib figure: about 9 s on the busy 2-core machine
def test_the_figure_shows_every_cell_with_its_interval_and_the_papers_numbers(tmp_path, paper):
    from PIL import Image

    for seeds, interval in [([0, 1, 2], "seeds"), ([0], "clips")]:
        payload = _fake_payload(tmp_path / f"runs{len(seeds)}", seeds, paper)
        frame = table_frame(payload, paper)
        if len(seeds) > 1:  # the file itself once (matplotlib takes seconds); the bars it draws for both
            out = tmp_path / "out"
            paths = render(frame, paper, out, notes(payload, paper))
            assert paths["png"] == out / FIGURE_NAME
            with Image.open(paths["png"]) as image:
                assert image.size[0] > 1000 and image.size[1] > 500
        bars = figure_bars(frame, paper, len(seeds))
        assert len(bars) == 2 * 2 * 2 * 2 * 3  # metrics x tasks x splits x classifiers x rows
        measured = frame[frame["kind"] == "measured"].set_index(["classifier", "training data"])
        for bar in bars:
            key = f"{bar['task']} {bar['split']} {'top-1' if bar['metric'] == 'top1' else 'top-5'}"
            record = measured.loc[(bar["classifier"], bar["row"])]
            assert bar["value"] == pytest.approx(record[key])
            assert (bar["low"], bar["high"]) == pytest.approx((record[f"{key} ci95 {interval} low"],
                                                              record[f"{key} ci95 {interval} high"]))
            assert bar["low"] <= bar["value"] <= bar["high"]
        papers = {(b["classifier"], b["row"], b["task"], b["split"], b["metric"]): b["paper"] for b in bars
                  if b["paper"] is not None}
        assert papers == {("MViTv2", "OphNet (source only)", "phase", "test", "top1"): 37.92,
                          ("MViTv2", "OphNet + Ophora", "phase", "test", "top1"): 42.24}
    payload["cells"] = [c if c["row"] != "OphNet + Bora" else {**c, "status": "n/a", "reason": "no model"}
                        for c in payload["cells"]]
    payload["statistics"] = table_statistics(payload["cells"], paper.rows, paper.classifiers, paper.tasks,
                                             ("val", "test"), 100, 0)
    bars = figure_bars(table_frame(payload, paper), paper, 1)
    assert {b["row"] for b in bars if b["missing"]} == {"OphNet + Bora"}


def test_the_notes_give_each_sources_window_in_seconds(tmp_path, paper):
    payload = _fake_payload(tmp_path / "runs", [0], paper)
    real = {"clips": 40, "fps": [15.0, 30.0, 60.0], "clip_s": [1.0, 4.0, 9.0], "window_s": [2.1333] * 3,
            "covered_s": [1.0, 2.1333, 2.1333], "shorter_than_window": 3, "sampling": "seconds at 30 fps"}
    synthetic = {**real, "clips": 20, "fps": [8.0] * 3, "clip_s": [6.125] * 3, "covered_s": [2.1333] * 3,
                 "shorter_than_window": 0}
    for cell in payload["cells"]:
        cell["windows"] = {"train/real": real, "val": real, "test": real,
                           **({"train/synthetic": synthetic} if cell["row"] != "OphNet (source only)" else {})}
    lines = window_notes(payload, paper)
    assert len(lines) == 2 and lines[0].startswith("window of SlowFast: 2.1333 s (seconds at 30 fps); ")
    assert "train real 15-60 fps, covers 1-2.1333 s (3 of 40 clips shorter: last frame repeated)" in lines[0]
    assert "OphNet + Ophora synthetic 8 fps, covers 2.1333 s;" in lines[0]
    assert lines[1].startswith("window of MViTv2: ")
    assert lines[0] in notes(payload, paper)


# -- published numbers and config ------------------------------------------------------------------------------


def test_the_paper_config_records_the_certain_numbers_and_three_seeds(paper):
    assert paper.seeds == (0, 1, 2)
    published = {row.label: row.published for row in paper.rows}
    assert published["OphNet (source only)"]["MViTv2"] == {"phase test top-1": 37.92}
    assert published["OphNet + Ophora"]["MViTv2"] == {"phase test top-1": 42.24}
    assert all("uncertain" in v for v in published["OphNet (source only)"]["SlowFast"].values())
    assert published["OphNet + Bora"] == {}
    assert all(row.template is None for row in paper.rows)  # no "Cataract surgery video" for glaucoma phases


def test_published_numbers_name_known_classifiers_and_columns():
    with pytest.raises(ConfigError, match=r"rows\[0\]\.published: unknown classifier 'MViT2'.*did you mean 'MViTv2'"):
        load_config("paper", {"rows.0.published": {"MViT2": {"phase test top-1": 1.0}}})
    with pytest.raises(ConfigError, match=r"unknown column 'phase tst top-1'.*did you mean 'phase test top-1'"):
        load_config("paper", {"rows.0.published": {"MViTv2": {"phase tst top-1": 1.0}}})
    with pytest.raises(ConfigError, match="distinct seeds"):
        load_config("paper", {"seeds": [0, 0]})


# -- prompts ---------------------------------------------------------------------------------------------------


def test_cataract1k_phases_get_the_released_prompt_other_classes_their_procedure():
    from importlib import resources

    with resources.as_file(resources.files("ophora.sim").joinpath("data/phase_prompts.csv")) as csv:
        released = {row.source["clip id"].rsplit("_", 1)[0]: row.source["phase prompt"] for row in read_prompts(csv)}
    names = {0: "Incision", 1: "capsule polishing", 2: "Anterior chamber flushing", 3: "Trabeculectomy flap",
             4: "Graft suturing"}
    prompts = synthetic.released_prompts("phase", [0, 1, 2, 3, 4], names,
                                         {3: "glaucoma surgery", 4: "corneal transplantation"})
    texts = [p.text for p in prompts]
    assert texts[:3] == [released["incision"], released["Capsule-Pulishing"], released["Anterio-Chamber-Flushing"]]
    assert texts[3] == "Generate a surgical video clip of glaucoma surgery with the current surgical phase as " \
                       "Trabeculectomy flap"
    assert "corneal transplantation" in texts[4] and not any("Cataract" in t for t in texts)
    with pytest.raises(ValueError, match=r"3 \('Trabeculectomy flap'\).*add a 'procedure' column"):
        synthetic.released_prompts("phase", [0, 3], names)


def test_class_names_csv_may_carry_the_procedure(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("id,name,procedure\n0,incision,cataract surgery\n7,iridectomy,glaucoma surgery\n")
    names, procedures = synthetic.read_class_names(path), synthetic.read_class_procedures(path)
    prompts = synthetic.released_prompts("phase", [0, 7], names, procedures)
    assert prompts[0].text.endswith("phase as incision") and "glaucoma surgery" in prompts[1].text


# -- leakage in Table 2 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table2_world(tmp_path_factory):
    from downstream.table2.data import world

    config = load_config("demo", {"dataset.ophsim": {"videos": 5, "seed": 1, "frames": 8, "size": [64, 64]}})
    work = tmp_path_factory.mktemp("table2_leakage")
    return config, world(config, work), work


def _real(config, world_folder):
    from downstream.table2.data import real_data

    return {task: real_data(config, task, world_folder)[0] for task in config.tasks}


@pytest.mark.slow  # the world fixture takes about 5 s
def test_generators_train_on_the_training_patients_and_the_demo_split_passes(table2_world):
    from downstream.table2.data import generator_manifest, world_sources, world_splits
    from downstream.table2.preflight import leakage
    from ophora.data.leakage import refs_of_instruction_set

    config, world_folder, work = table2_world
    manifest = generator_manifest(config.rows[1], world_folder)
    train_sources = {world_sources(world_folder)[c] for c, s in world_splits(world_folder).items() if s == "train"}
    assert {r.source for r in refs_of_instruction_set(manifest)} == train_sources and len(train_sources) == 3
    report = leakage(config, _real(config, world_folder), world_folder, work / "leakage")
    assert report.leaks == [] and len(report.checked) == 4 * 3  # (val, test) x tasks vs real train x2 + generator
    assert any(c["train"].startswith("generator data") for c in report.checked)


@pytest.mark.slow  # the world fixture takes about 5 s
def test_a_generator_trained_on_test_patients_is_refused_naming_both_clips(table2_world):
    from downstream.table2.preflight import leakage

    config, world_folder, work = table2_world
    everything = world_folder / "ophora_instructions" / "instructions.csv"
    leaky = load_config("demo", {"dataset.ophsim": dict(config.dataset.ophsim),
                                 "rows.1.train_manifest": str(everything), "leakage.phash": False})
    with pytest.raises(LeakageError) as caught:
        leakage(leaky, _real(leaky, world_folder), world_folder)
    message = str(caught.value)
    test_case = json.loads((world_folder / "world.json").read_text())["patients"]
    test_ids = [c for c, p in test_case.items() if p["split"] in ("val", "test")]
    assert "source video: held-out clip" in message and any(f"'{c}[" in message for c in test_ids)
    assert f"(generator data: {everything})" in message and "... and" in message
    allowed = load_config("demo", {"dataset.ophsim": dict(config.dataset.ophsim),
                                   "rows.1.train_manifest": str(everything), "leakage.phash": False,
                                   "leakage.allow": True})
    report = leakage(allowed, _real(allowed, world_folder), world_folder)
    assert report.allowed and report.to_json()["leaks"] > 0


def test_cells_of_a_row_that_failed_are_left_out_of_the_statistics(tmp_path):
    rows = [SimpleNamespace(label="source", generator=None), SimpleNamespace(label="+ gen", generator="g")]
    classifiers = [SimpleNamespace(label="C")]
    labels = np.arange(10) % 3
    _write_eval(tmp_path / "a", "test", np.eye(3)[labels], labels)
    cells = [{"row": "source", "classifier": "C", "task": "phase", "seed": 0, "status": "ok", "reason": "",
              "run_dir": str(tmp_path / "a"), "results": {"splits": {"test": {"top1": 1.0, "top5": 1.0}}}},
             {"row": "+ gen", "classifier": "C", "task": "phase", "seed": 0, "status": "n/a", "reason": "missing",
              "run_dir": "", "results": None}]
    stats = table_statistics(cells, rows, classifiers, ["phase"], ["test"], 100, 0)
    failed = [e for e in stats["cells"] if e["row"] == "+ gen"]
    assert all(e["mean"] is None and "vs_source" not in e for e in failed)
    assert next(e for e in stats["cells"] if e["row"] == "source" and e["metric"] == "top1")["mean"] == 100.0
