"""Table 2 end to end at the smallest size: an OphSim world, a fast stand-in generator, tiny classifiers;
the rendered files parse, an unregistered generator's row says so, a rerun is served from the caches, and the
paper configuration stops at its preflight."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import baselines
from downstream.table2.__main__ import main
from downstream.table2.config import load_config
from downstream.table2.preflight import preflight
from ophora.configs import ConfigError
from ophora.data.manifests import GeneratedVideo, append_generated
from ophora.data.video import write_video
from ophora.results import resolve_path
from ophora.seeding import derive_seed

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class _FlatGenerator:
    """Stand-in generator: a flat colour per prompt with noise, 6 frames of 32x32, in no time."""

    name, conditional, stages = "flat-test", True, ("train",)

    def train(self, manifest, out, *, stage=None, preset="tiny", init=None, overrides=None, progress=False):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").write_text(json.dumps({"manifest": str(manifest)}))
        return out

    def generate(self, model, prompts, out, *, videos_per_prompt=1, seed=0, overrides=None, progress=False):
        out, written = Path(out), []
        for prompt in prompts:
            for k in range(videos_per_prompt):
                path = out / f"{prompt.index:05d}_{k:02d}.mp4"
                if path.exists():
                    continue
                g = np.random.default_rng(derive_seed(seed, prompt.index, k))
                colour = np.frombuffer(prompt.text.encode()[:3].ljust(3, b"x"), np.uint8)
                frames = np.clip(colour + g.normal(0, 10, (6, 32, 32, 3)), 0, 255).astype(np.uint8)
                write_video(path, frames, 8.0)
                append_generated(out, GeneratedVideo(path, prompt.text, derive_seed(seed, prompt.index, k),
                                                     self.name, "0" * 64, {"frames": 6}, {"source": prompt.source}))
                written.append(path)
        return written


@pytest.fixture(scope="module", autouse=True)
def flat_generator():
    baselines.register("flat-test", _FlatGenerator)
    yield


TINY = {"max_steps": 2, "epochs": 1, "crop": 32, "short_side": 32, "frames": 4, "test_views": 1, "batch_size": 4}


def _quick_config(path: Path) -> Path:
    config = {
        "name": "quick",
        "tasks": ["phase", "operation"],
        "seeds": [0],
        "dataset": {"kind": "ophsim", "ophsim": {"videos": 5, "seed": 1, "frames": 8, "size": [64, 64]}},
        "classifiers": [{"label": "SlowFast (tiny)", "recipe": "slowfast_tiny", "overrides": TINY},
                        {"label": "MViTv2 (tiny)", "recipe": "mvitv2_tiny", "overrides": TINY}],
        "rows": [{"label": "source only"},
                 {"label": "source + flat", "generator": "flat-test", "clips_per_class": 1, "ratio": 0.2},
                 {"label": "source + flat, filtered", "generator": "flat-test", "clips_per_class": 1, "ratio": 0.2,
                  "filter_min_prob": 0.0},
                 {"label": "source + nowhere", "generator": "no-such-generator", "clips_per_class": 1}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_quick_table2_runs_renders_and_reruns_from_cache(tmp_path):
    config = _quick_config(tmp_path / "quick.yaml")
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--config", str(config), "--work", str(work), "--out", str(out)]
    start = time.perf_counter()
    assert main(argv) == 0
    first = time.perf_counter() - start
    assert first < 90, f"quick Table 2 took {first:.0f} s"

    table = pd.read_csv(out / "table.csv")
    assert list(table["classifier"]) == ["SlowFast (tiny)"] * 4 + ["MViTv2 (tiny)"] * 4
    assert list(table["training data"]) == ["source only", "source + flat", "source + flat, filtered",
                                            "source + nowhere"] * 2
    numeric = [f"{t} {s} {m}" for t in ("phase", "operation") for s in ("val", "test") for m in ("top-1", "top-5")]
    assert [c for c in table.columns if c in numeric] == numeric
    ok = table["training data"] != "source + nowhere"
    assert table.loc[ok, numeric].notna().all().all()
    assert ((table.loc[ok, numeric] >= 0) & (table.loc[ok, numeric] <= 100)).all().all()
    assert table.loc[~ok, numeric].isna().all().all()
    assert table.loc[~ok, "note"].str.contains("'no-such-generator' is not registered").all()

    results = json.loads((out / "results.json").read_text())
    assert results["config"]["name"] == "quick" and results["seed"] == 0 and "git_commit" in results["provenance"]
    cells = results["cells"]
    assert len(cells) == 4 * 2 * 2  # rows x classifiers x tasks
    flat = [c for c in cells if c["row"] == "source + flat" and c["status"] == "ok"]
    phase_train = results["data"]["phase"]["clips"]["train"]
    assert all(c["train_clips"]["synthetic"] == round(0.2 * results["data"][c["task"]]["clips"]["train"])
               for c in flat)
    assert phase_train == 36 and results["data"]["phase"]["num_classes"] == 12
    for cell in (c for c in cells if c["row"] == "source + flat, filtered"):
        made = cell["train_clips"]["synthetic_set"]
        kept = made["filter"]["kept"]
        assert kept + made["filter"]["dropped"] == made["clips"]  # every synthetic clip judged
        n_real = results["data"][cell["task"]]["clips"]["train"]
        assert cell["train_clips"].get("synthetic", 0) == min(round(0.2 * n_real), kept)
    # windows in seconds (issue 17): the tiny recipes sample at 8 fps, 4 frames x 2 = 1 s on every source
    for cell in flat:
        assert set(cell["windows"]) == {"train/real", "train/synthetic", "val", "test"}
        for report in cell["windows"].values():
            assert report["window_s"] == [1.0] * 3 and report["sampling"] == "seconds at 8 fps"
    cell = next(c for c in cells if c["status"] == "ok")
    assert set(cell["results"]["splits"]) == {"val", "test"}
    assert table.loc[0, "phase val top-1"] == pytest.approx(
        100 * next(c for c in cells if (c["row"], c["classifier"], c["task"]) ==
                   ("source only", "SlowFast (tiny)", "phase"))["results"]["splits"]["val"]["top1"], abs=1e-4)

    markdown = (out / "table.md").read_text()
    assert markdown.count("\n| ") >= 7 and "n/a" in markdown and "not registered" in markdown
    assert "window of SlowFast (tiny): 1 s (seconds at 8 fps); train real 8 fps" in markdown
    assert (out / "accuracy.png").stat().st_size > 10_000  # the Table 2 figure
    tex = (out / "table.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and tex.rstrip().endswith("\\end{tabular}")
    assert tex.count("\\\\") == 3 + 8 and "source + flat" in tex

    start = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - start < max(10.0, first / 3)  # everything served from the caches
    assert pd.read_csv(out / "table.csv").equals(table)


def test_paper_preflight_lists_every_missing_asset_before_computing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)
    overrides = {"dataset.videos_root": str(tmp_path / "videos")}
    config = load_config("paper", overrides)
    missing = "\n".join(preflight(config))
    assert f"743 of 743 files missing under {tmp_path / 'videos'}" in missing
    assert "row 'OphNet + Ophora', phase: no generator model" in missing
    assert "fetch kinetics400:slowfast_r50" in missing and "fetch kinetics400:mvit_v2_s" in missing
    argv = ["--config", "paper", "--set", f"dataset.videos_root={tmp_path / 'videos'}", "--work", str(tmp_path / "w"),
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="nothing was computed"):
        main(argv)
    assert not (tmp_path / "w").exists() and not (tmp_path / "out").exists()
    assert main(argv[:4] + ["--preflight"]) == 2
    assert "missing:" in capsys.readouterr().out


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": {"kind": "ophsim"}, "classifiers": [], "rows": [{"label": "x",
                                                                                              "ratoi": 1}]}))
    with pytest.raises(ConfigError, match=r"bad\.yaml: rows\[0\]\.ratoi: unknown key; known keys: \[.*'ratio'.*"
                                          r"did you mean 'ratio'"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"unknown Table 2 config 'dmeo'; expected one of \['demo', 'paper'\].*"
                                          r"did you mean 'demo'"):
        load_config("dmeo")


@pytest.mark.slow
def test_ophnet_kind_trims_untrimmed_videos_and_reads_external_clips(tmp_path):
    """The paper's path at toy size: OphNet-format CSV + untrimmed videos cut on the fly, and synthetic clips
    from an external folder of generated videos (``generator: external``)."""
    from ophora.generation.prompts import Prompt
    from ophora.sim.world import WorldConfig, build_world

    build_world(WorldConfig(videos=5, seed=2, frames=8, size=(64, 64)), tmp_path / "world", progress=False)
    ophnet = tmp_path / "world" / "ophnet"
    template = "Cataract surgery video, class {id}."
    external = tmp_path / "external_clips"
    _FlatGenerator().generate(None, [Prompt(c, template.format(id=c)) for c in range(12)], external)
    config = {
        "name": "toy-ophnet", "tasks": ["phase"],
        "dataset": {"kind": "ophnet", "csv": {"phase": str(ophnet / "OphSim_loca_phase.csv")},
                    "videos_root": str(ophnet / "videos"), "trim": "untrimmed", "num_classes": {"phase": 12}},
        "classifiers": [{"label": "SlowFast (tiny)", "recipe": "slowfast_tiny", "overrides": TINY}],
        "rows": [{"label": "real"},
                 {"label": "real + external", "generator": "external", "model": {"phase": str(external)},
                  "template": template, "clips_per_class": 1, "ratio": 0.25}],
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    assert preflight(load_config(path)) == []
    out = tmp_path / "out"
    assert main(["--config", str(path), "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["ok", "ok"]
    mixed = results["cells"][1]["train_clips"]
    assert mixed["real"] == 36 and mixed["synthetic"] == 9 and mixed["synthetic_set"]["generator"] == "external"
    run_dir = resolve_path(results["cells"][0]["run_dir"], results, out / "results.json")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["run"]["train_clips"] == 36
    assert pd.read_csv(out / "table.csv")[["phase val top-1", "phase test top-5"]].notna().all().all()
