"""Sample efficiency (issue 21, item 4): the steady-N rule, the seeded subsets, subset values equal to the
metric's own numbers, the packaged steady-N table and evaluate's ``sample_efficiency`` field, config errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg, stats

from benchmarks.evaluate import EvalConfig, evaluate, resolve_metrics, sample_efficiency, set_states, summary_table
from benchmarks.metrics.fd import FrechetState
from benchmarks.sanity.config import load_sanity_config
from benchmarks.sanity.efficiency import (
    _comparisons,
    efficiency_spec,
    grid,
    judge,
    steady_n,
    study_curve,
    subset_draws,
    subset_state,
    write_steady_table,
)
from benchmarks.sanity.report import efficiency_table, write_efficiency
from ophora.configs import ConfigError

from eval_sets import make_folder, make_generated

SURGICAL = (("fid", "fid/ophsim-surgical"), ("fvd", "fvd/ophsim-surgical"))


def _metrics(*names: str) -> dict:
    return resolve_metrics(EvalConfig(real="", fake="", metrics=names, protocols=SURGICAL))


def _rows(videos: int, per_video: int, d: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """float16-exact Gaussian rows (the study keeps rows as float16) and their video positions."""
    g = np.random.default_rng(seed)
    rows = (g.standard_normal((videos * per_video, d)) + shift).astype(np.float16)
    return rows, np.repeat(np.arange(videos), per_video)


# ---------------------------------------------------------------------------------------------------------
# the rule


def test_steady_n_is_the_smallest_n_from_which_every_larger_n_holds():
    ns = [8, 16, 32, 64, 96]
    assert steady_n(ns, [False, False, True, True, True]) == 32  # converges at 32
    assert steady_n(ns, [True, False, True, True, True]) == 32  # inside at 8 by chance, out again at 16
    assert steady_n(ns, [True] * 5) == 8
    assert steady_n(ns, [True, True, True, True, False]) is None  # never settles: not even the largest N


def test_a_converging_curve_and_one_that_never_converges():
    """The rule on synthetic subset values (evenly spaced normal quantiles, so the fractions are exact): a value
    whose subsets tighten around the full-N one is steady where at least half of them enter the interval; one
    biased by c / N that stays above the interval never is."""
    ns, low, high = [8, 16, 32, 64], 0.9, 1.1
    z = stats.norm.ppf(np.linspace(0.025, 0.975, 21))
    converging = [1.0 + z * 0.4 * 8 / n for n in ns]  # spread 0.4, 0.2, 0.1, 0.05: |z| < 0.25, 0.5, 1, 2
    fractions = [float(np.mean((v >= low) & (v <= high))) for v in converging]
    assert fractions == pytest.approx([5 / 21, 9 / 21, 15 / 21, 21 / 21])
    assert steady_n(ns, [f >= 0.5 for f in fractions]) == 32
    biased = [1.0 + 10.0 / n + z * 0.01 for n in ns]  # 1.16 at N = 64
    assert steady_n(ns, [float(np.mean((v >= low) & (v <= high))) >= 0.5 for v in biased]) is None


def test_grid_doubles_from_8_below_the_set_and_ends_at_its_size():
    assert grid((), 96) == [8, 16, 32, 64, 96]
    assert grid((), 24) == [8, 16, 24]
    assert grid((4, 10, 50), 24) == [4, 10, 24]


# ---------------------------------------------------------------------------------------------------------
# subsets


def test_subsets_are_seeded_without_replacement_and_whole_at_the_set_size():
    videos = np.arange(40)
    a = subset_draws(videos, 8, 5, 0, "reference")
    assert [d.tolist() for d in a] == [d.tolist() for d in subset_draws(videos, 8, 5, 0, "reference")]
    assert any(x.tolist() != y.tolist() for x, y in zip(a, subset_draws(videos, 8, 5, 1, "reference")))
    assert any(x.tolist() != y.tolist() for x, y in zip(a, subset_draws(videos, 8, 5, 0, "other")))
    assert all(len(np.unique(d)) == 8 and set(d) <= set(videos) for d in a)
    whole = subset_draws(videos, 40, 5, 0, "reference")
    assert len(whole) == 1 and whole[0].tolist() == list(range(40))
    with pytest.raises(ValueError, match="cannot draw 41 of 40"):
        subset_draws(videos, 41, 5, 0, "reference")


def test_a_subset_state_keeps_every_row_of_its_videos_and_no_other():
    rows, positions = _rows(10, 3, 4, 0)
    fid = _metrics("fid")["fid"]
    state = subset_state(fid, rows, positions, np.array([2, 7]))
    kept, kept_positions = state.row_arrays()
    assert state.videos == 2 and state.stats.count == 6
    assert kept_positions.tolist() == [2, 2, 2, 7, 7, 7]
    np.testing.assert_array_equal(kept, rows[[6, 7, 8, 21, 22, 23]])


# ---------------------------------------------------------------------------------------------------------
# numbers: the metric's own, on the subset


def test_fid_on_a_subset_equals_the_frechet_distance_of_that_subsets_rows():
    """FID through the study's subset states equals the Fréchet distance computed here from the chosen videos'
    rows with numpy and scipy (means, N-1 covariances, sqrtm), and the metric's value on states streamed from
    those rows."""
    metric = _metrics("fid")["fid"]
    real, real_pos = _rows(30, 4, 6, 1)
    fake, fake_pos = _rows(30, 4, 6, 2, shift=0.3)
    a, b = np.array([0, 3, 5, 9, 11, 20, 21, 29]), np.array([1, 2, 4, 8, 13, 17, 25, 28])
    value = metric.compute(subset_state(metric, real, real_pos, a), subset_state(metric, fake, fake_pos, b))["value"]
    x, y = real[np.isin(real_pos, a)].astype(np.float64), fake[np.isin(fake_pos, b)].astype(np.float64)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2)
                     - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real)
    assert value == pytest.approx(expected, rel=1e-8)
    streamed_r, streamed_f = FrechetState(6, metric.protocol.divisor), FrechetState(6, metric.protocol.divisor)
    streamed_r.update(x, real_pos[np.isin(real_pos, a)])
    streamed_f.update(y, fake_pos[np.isin(fake_pos, b)])
    assert metric.compute(streamed_r, streamed_f)["value"] == pytest.approx(value, rel=1e-10)


def test_kid_and_kvd_on_a_subset_equal_the_unbiased_mmd_of_that_subsets_rows(tmp_path):
    """KVD (one row per video) and KID (rows per video) on subset states equal the unbiased polynomial MMD^2
    computed here (every row of the subset: fewer rows than the protocols' subset size of 1000), and the metric's
    value on states that keep their rows on disk as the evaluation's do."""
    metrics = _metrics("kid", "kvd")

    def mmd(x, y):
        k = lambda a, b: (a @ b.T / x.shape[1] + 1.0) ** 3  # noqa: E731
        m = len(x)
        kxx, kyy = k(x, x), k(y, y)
        return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * k(x, y).mean()

    for name, per_video in (("kvd", 1), ("kid", 3)):
        metric, view = metrics[name], metrics[metrics[name].source]
        real, real_pos = _rows(20, per_video, 5, 3)
        fake, fake_pos = _rows(20, per_video, 5, 4, shift=0.5)
        a, b = np.arange(0, 20, 2), np.arange(1, 20, 2)
        value = metric.compute(subset_state(view, real, real_pos, a), subset_state(view, fake, fake_pos, b))["value"]
        x, y = real[np.isin(real_pos, a)].astype(np.float64), fake[np.isin(fake_pos, b)].astype(np.float64)
        assert value == pytest.approx(mmd(x, y), rel=1e-9), name
        kept_r = FrechetState(5, view.protocol.divisor, tmp_path / f"{name}-r.f16")
        kept_f = FrechetState(5, view.protocol.divisor, tmp_path / f"{name}-f.f16")
        kept_r.update(x, real_pos[np.isin(real_pos, a)])
        kept_f.update(y, fake_pos[np.isin(fake_pos, b)])
        assert metric.compute(kept_r, kept_f)["value"] == pytest.approx(value, rel=1e-9), name


def test_a_curve_ends_at_the_full_value_with_its_interval():
    metrics = _metrics("fvd", "kvd")
    real, real_pos = _rows(40, 1, 4, 5)
    fake, fake_pos = _rows(40, 1, 4, 6, shift=0.4)
    for name in ("fvd", "kvd"):
        metric, view = metrics[name], metrics["fvd"]
        curve = study_curve(metric, view, (real, real_pos), (fake, fake_pos), ns=(), subsets=6, seed=0,
                            pair="shifted", n_boot=50, coverage=0.5)
        full = metric.compute(subset_state(view, real, real_pos), subset_state(view, fake, fake_pos), n_boot=50,
                              seed=0)
        assert curve["ns"] == [8, 16, 32, 40] and curve["subsets"] == [6, 6, 6, 1]
        assert curve["full"] == pytest.approx(full["value"]) and curve["low"] == pytest.approx(full["ci"]["low"])
        assert curve["mean"][-1] == pytest.approx(full["value"]) and curve["inside"][-1] == 1.0
        assert curve["steady_n"] == steady_n(curve["ns"][:-1], [f >= 0.5 for f in curve["inside"][:-1]])


def test_the_set_size_is_the_reference_and_never_the_steady_n():
    """At N max every subset is the whole set (inside by construction): a curve outside at the largest N below
    it has no steady N, not N max."""
    curve = {"ns": [8, 16, 32, 64, 96], "inside": [0.0, 0.0, 0.0, 0.4, 1.0], "mean": [9, 8, 7, 6.6, 6.0],
             "low": 5.0, "high": 6.5}
    assert judge(curve, 0.5)["steady_n"] is None and curve["steady_n_mean"] is None
    curve["inside"][3], curve["mean"][3] = 0.6, 6.4
    assert (judge(curve, 0.5)["steady_n"], curve["steady_n_mean"]) == (64, 64)


@pytest.mark.slow
def test_set_states_give_the_evaluations_number(tmp_path):
    """The study's features (one extraction per set) reproduce evaluate's FVD and KVD on the full sets, the
    rows being float16 where evaluate's point estimate streams float64 statistics."""
    make_folder(tmp_path / "real", 10, 16)
    make_generated(tmp_path / "fake", 10)
    cfg = EvalConfig(str(tmp_path / "real"), str(tmp_path / "fake"), metrics=("fvd", "kvd"), protocols=SURGICAL,
                     weights="pretrained", bootstrap=0, workers=0, progress=False, no_cache=True)
    result = evaluate(cfg)
    metrics, real, _ = set_states(cfg, cfg.real, "real", tmp_path / "r")
    _, fake, _ = set_states(cfg, cfg.fake, "fake", tmp_path / "f")
    view = metrics["fvd"]
    for name in ("fvd", "kvd"):
        value = metrics[name].compute(subset_state(view, *real["fvd"].row_arrays()),
                                      subset_state(view, *fake["fvd"].row_arrays()))["value"]
        assert value == pytest.approx(result["metrics"][name]["value"], rel=2e-3, abs=1e-4), name


# ---------------------------------------------------------------------------------------------------------
# the packaged table and evaluate's field


def _study() -> dict:
    detector = {"identifier": "ophsim-surgical:video", "sha256": "ab" * 32}
    curve = {"pair": "real", "n_max": 96, "ns": [8, 16, 32, 64, 96], "inside": [0.0, 0.2, 0.6, 0.9, 1.0],
             "mean": [9.0, 7.0, 6.1, 6.0, 6.0], "p025": [7.0, 6.0, 5.5, 5.8, 6.0], "p975": [11, 8, 6.6, 6.2, 6.0],
             "full": 6.0, "low": 5.0, "high": 6.5, "steady_n": 32, "steady_n_mean": 32}
    kernel = {**curve, "inside": [0.6, 0.8, 1.0, 1.0, 1.0], "steady_n": 8, "steady_n_mean": 8}
    rows = [{**curve, "scorer": "FVD surgical", "metric": "fvd", "protocol": "fvd/ophsim-surgical",
             "features_protocol": None, "detector": detector},
            {**kernel, "scorer": "KVD surgical", "metric": "kvd", "protocol": "kvd",
             "features_protocol": "fvd/ophsim-surgical", "detector": detector}]
    scorers = {r["scorer"]: {"metric": r["metric"], "protocol": r["protocol"],
                             "features_protocol": r["features_protocol"], "detector": detector, "n_max": 96,
                             "steady_n": r["steady_n"], "steady_n_mean": r["steady_n_mean"],
                             "per_pair": {"real": r["steady_n"]}} for r in rows}
    return {"settings": {"ns": "8, 16, ...", "subsets": 20, "coverage": 0.5, "n_boot": 100, "seed": 0,
                         "pairs": ["real"], "rule": "at least 0.5 inside"},
            "world": {"videos": 16, "seed": 9001, "frames": 16, "size": [64, 64], "fps": 8.0}, "real_videos": 192,
            "curves": rows, "scorers": scorers, "comparisons": _comparisons(scorers), "notes": []}


def test_comparisons_pair_kernel_and_frechet_on_the_same_features_only():
    study = _study()
    (comparison,) = study["comparisons"]
    assert (comparison["frechet_steady_n"], comparison["kernel_steady_n"], comparison["target_holds"]) == (32, 8, True)
    other = {**study["scorers"]["KVD surgical"], "detector": {"identifier": "random-init:i3d", "sha256": None}}
    assert _comparisons({"FVD surgical": study["scorers"]["FVD surgical"], "KVD random": other}) == []


def test_the_packaged_table_drives_evaluates_sample_efficiency_field(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"config": {"name": "demo"}, "efficiency": _study(),
                                                       "provenance": {"git_commit": "abc", "created_utc": "now"}}))
    table = json.loads(write_steady_table(tmp_path / "results.json", tmp_path / "steady_n.json").read_text())
    assert table["provenance"]["git_commit"] == "abc" and "OphSim world seed 9001, 16 surgeries" in table["measured_on"]
    detector = {"identifier": "ophsim-surgical:video", "sha256": "ab" * 32}
    fvd = {"n_real": 24, "n_fake": 24, "protocol": {"name": "fvd/ophsim-surgical"}, "detector": detector}
    below = sample_efficiency("fvd", fvd, table)
    assert (below["n"], below["steady_n"], below["past"]) == (24, 32, False) and below["measured_on"]
    kvd = {"n_real": 24, "n_fake": 30, "protocol": {"name": "kvd"}, "detector": detector,
           "features_protocol": {"name": "fvd/ophsim-surgical", "recorded_under": "metrics.fvd.protocol"}}
    assert sample_efficiency("kvd", kvd, table)["past"] is True
    other = sample_efficiency("fvd", {**fvd, "detector": {"identifier": "random-init:i3d", "sha256": None}}, table)
    assert other["steady_n"] is None and other["past"] is None
    assert "measured only for ophsim-surgical:video" in other["note"]
    none = sample_efficiency("fid", {**fvd, "protocol": {"name": "fid/pytorch-fid"}}, table)
    assert none["past"] is None and none["note"].startswith("no steady N measured for fid under fid/pytorch-fid")
    assert sample_efficiency("fvd", fvd, None)["steady_n"] is None


def test_evaluate_writes_sample_efficiency_into_every_metric_and_the_summary(tmp_path, monkeypatch):
    import benchmarks.evaluate as harness

    make_folder(tmp_path / "real", 4, 16)
    make_generated(tmp_path / "fake", 4)
    cfg = EvalConfig(str(tmp_path / "real"), str(tmp_path / "fake"), metrics=("fvd", "kvd"), protocols=SURGICAL,
                     weights="pretrained", bootstrap=0, workers=0, progress=False, no_cache=True)
    first = harness.evaluate(cfg)
    detector = first["metrics"]["fvd"]["detector"]
    table = {"measured_on": "OphSim world seed 9001", "entries": [
        {"metric": "fvd", "protocol": "fvd/ophsim-surgical", "features_protocol": None, "n_max": 96,
         "detector": {"identifier": detector["identifier"], "sha256": detector["sha256"]}, "steady_n": 4}]}
    monkeypatch.setattr(harness, "steady_table", lambda: table)
    result = harness.evaluate(cfg)
    assert result["metrics"]["fvd"]["sample_efficiency"] == {
        "n": 4, "steady_n": 4, "past": True, "measured_on": "OphSim world seed 9001",
        "note": "N = 4 is past the steady N 4 the sanity study measured"}
    assert result["metrics"]["kvd"]["sample_efficiency"]["steady_n"] is None
    text = summary_table(result)
    assert "note: fvd: sample efficiency: N = 4 is past the steady N 4" in text
    assert "note: kvd: sample efficiency: no steady N measured for kvd under kvd" in text


def test_the_report_writes_the_table_and_the_figure(tmp_path):
    paths = write_efficiency(_study(), tmp_path, "demo")
    text = paths["efficiency_md"].read_text()
    row = "| FVD surgical | real | 96 | 6.0000 [5.0000, 6.5000] | 8:0.00 16:0.20 32:0.60 64:0.90 96:1.00 | 32 |"
    assert row in text
    assert "target (kernel <= half the Fréchet) holds (kernel 8 vs Fréchet 32)" in text
    assert paths["efficiency_png"].stat().st_size > 10_000
    assert "steady_n" in paths["efficiency_csv"].read_text().splitlines()[0]
    assert efficiency_table(_study(), "demo").records[1]["steady_n"] == 8


# ---------------------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize("override, key, words", [
    ({"efficiency.ns": [16, 8]}, "efficiency.ns", "increasing whole numbers >= 2"),
    ({"efficiency.subsets": 1}, "efficiency.subsets", ">= 2"),
    ({"efficiency.coverage": 1.5}, "efficiency.coverage", "fraction in (0, 1]"),
    ({"efficiency.enabled": "no"}, "efficiency.enabled", "true or false"),
    ({"efficiency.sizes": [8]}, "efficiency.sizes", "unknown key"),
    ({"efficiency.world": {"videos": 16, "seed": 7001}}, "efficiency.world.seed", "reserved"),
    ({"efficiency.world": {"surgeries": 16}}, "efficiency.world.surgeries", "unknown key"),
    ({"efficiency.degradations": ["blurr"]}, "efficiency.degradations[0]", "degradation name"),
    ({"efficiency.degradations": [{"name": "blur", "strength": 0}]}, "efficiency.degradations[0].strength",
     "above 0"),
    ({"efficiency.scorers": ["no such scorer"]}, "efficiency.scorers", "not a scorer label"),
])
def test_config_errors_name_the_key(override, key, words):
    cfg = load_sanity_config("demo", override)
    with pytest.raises(ConfigError) as err:
        efficiency_spec(cfg)
    assert err.value.key == key and words in str(err.value) and "demo.yaml" in str(err.value)


def test_config_defaults_and_a_study_world():
    spec = efficiency_spec(load_sanity_config("demo"))
    assert (spec.enabled, spec.subsets, spec.coverage, spec.ns) == (True, 20, 0.5, ())
    cfg = load_sanity_config("demo", {"efficiency.world": {"videos": 16, "seed": 9001}, "efficiency.enabled": False,
                                      "efficiency.degradations": ["blur", {"name": "noise", "strength": 8}]})
    spec = efficiency_spec(cfg)
    assert spec.world.videos == 16 and spec.world.size == (64, 64) and not spec.enabled
    assert spec.degradations == (("blur", None), ("noise", 8.0))


# ---------------------------------------------------------------------------------------------------------
# evaluate's wording for the new metrics (requests of the FVMD work)


def test_fvmds_tracker_is_printed_as_weight_free_and_its_auto_choice_says_it_ships():
    from benchmarks.evaluate import build_parser, resolve_auto

    tracker = {"comparable_with_literature": False, "identifier": "opencv-lk:opencv=5.1.0"}
    payload = {"failed": [], "detectors": {"fvmd": tracker},
               "metrics": {"fvmd": {"value": 10.0, "n_real": 8, "n_fake": 8, "detector": tracker,
                                    "protocol": {"name": "fvmd/opencv-lk"}}}}
    line = summary_table(payload).splitlines()[1]
    assert line.endswith("fvmd/opencv-lk  (weight-free tracker: not comparable)")
    choice = resolve_auto(EvalConfig(real="", fake="", metrics=("fvmd",), weights="auto"))[1]["fvmd"]
    assert choice["why"] == "fvmd/opencv-lk: its detector ships with the suite (nothing to fetch)"
    assert "V-JEPA 2 for jedi" in build_parser().format_help().replace("\n", " ").replace("  ", " ")


def test_the_packaged_table_is_well_formed():
    """The shipped steady_n.json (written by the study) names registered metrics and protocols, a rule, where it
    was measured and the commit; each steady N is a whole number below the study's N or None."""
    from benchmarks import metrics as registry
    from benchmarks.evaluate import steady_table as packaged

    table = packaged()
    if table is None:
        pytest.skip("no packaged steady-N table")
    assert table["format"] == "ophora-steady-n/1" and table["rule"] and table["measured_on"]
    assert table["provenance"]["git_commit"]
    for entry in table["entries"]:
        assert entry["metric"] in registry.names()
        assert entry["protocol"] in registry.protocol_names()
        assert entry["steady_n"] is None or 2 <= entry["steady_n"] < entry["n_max"]
        assert entry["detector"]["identifier"] and entry["detector"]["sha256"]


def test_the_refresh_command_writes_the_table_and_refuses_a_file_without_a_study(tmp_path, capsys):
    from benchmarks.sanity.steady import main

    (tmp_path / "results.json").write_text(json.dumps({"config": {"name": "demo", "source": "package:demo.yaml"},
                                                       "efficiency": _study()}))
    assert main(["refresh", str(tmp_path / "results.json"), "--to", str(tmp_path / "t.json")]) == 0
    table = json.loads((tmp_path / "t.json").read_text())
    assert [e["steady_n"] for e in table["entries"]] == [32, 8]
    assert table["measured_on"].endswith("sanity config demo (package:demo.yaml)")
    (tmp_path / "other.json").write_text(json.dumps({"config": {}, "curves": []}))
    assert main(["refresh", str(tmp_path / "other.json"), "--to", str(tmp_path / "u.json")]) == 2
    assert "no efficiency study in it" in capsys.readouterr().err and not (tmp_path / "u.json").exists()


_RUN = """
name: tinyeff
world: {videos: 2, seed: 9001, frames: 16, size: [64, 64]}
work: WORK
output: OUT
bootstrap: 10
scorers:
  - {protocol: fvd/ophsim-surgical, weights: pretrained, label: FVD surgical}
  - {protocol: kvd, features: fvd/ophsim-surgical, weights: pretrained, label: KVD surgical}
  - {protocol: clipscore/ophsim-surgical, weights: pretrained, label: CLIPScore surgical}
degradations:
  - {name: blur, strengths: [1.0, 3.0]}
efficiency: {ns: [4, 8], subsets: 3, bootstrap: 10}
"""


@pytest.mark.slow
def test_the_sanity_run_studies_efficiency_as_its_last_stage_and_a_rerun_recomputes_nothing(tmp_path, monkeypatch):
    from benchmarks.sanity.__main__ import main

    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "tinyeff.yaml"
    config.write_text(_RUN.replace("WORK", str(tmp_path / "work")).replace("OUT", str(tmp_path / "out")))
    assert main(["--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "out" / "tinyeff"
    study = json.loads((out / "results.json").read_text())["efficiency"]
    assert study["settings"]["pairs"] == ["real", "blur-1"]  # the middle of 0, 1 and 3 px
    assert sorted((c["scorer"], c["pair"]) for c in study["curves"]) == [
        ("FVD surgical", "blur-1"), ("FVD surgical", "real"), ("KVD surgical", "blur-1"), ("KVD surgical", "real")]
    assert all(c["ns"] == [4, 8, 12] and c["subsets"] == [3, 3, 1] for c in study["curves"])  # halves of 12
    assert [(c["frechet"], c["kernel"]) for c in study["comparisons"]] == [("FVD surgical", "KVD surgical")]
    assert any("CLIPScore surgical left out" in n for n in study["notes"])
    assert (out / "efficiency.md").stat().st_size > 0 and (out / "efficiency.png").stat().st_size > 10_000
    curves = sorted((tmp_path / "work").rglob("curves/*.json"))
    stamps = [p.stat().st_mtime_ns for p in curves]
    assert len(curves) == 4
    assert main(["--config", str(config), "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["efficiency"]["curves"] == study["curves"]
    assert [p.stat().st_mtime_ns for p in curves] == stamps
    assert main(["--config", str(config), "--no-progress", "--set", "efficiency.enabled=false"]) == 0
    assert json.loads((out / "results.json").read_text())["efficiency"] is None
