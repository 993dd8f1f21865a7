"""The sanity suite (``python -m benchmarks.sanity``): each degradation does what it says, verdicts follow the
curves, and a tiny run writes its table, JSON and plot and resumes without recomputing."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from benchmarks.sanity import degrade
from benchmarks.sanity.__main__ import main
from benchmarks.sanity.config import load_sanity_config
from benchmarks.sanity.degrade import DEGRADATIONS, FAMILIES, chosen_clips
from benchmarks.sanity.verdict import Curve, judge, spearman
from ophora.cli import run_command
from ophora.configs import ConfigError


def _textured_clip(frames: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 [T, size, size, 3]: random texture, so every degradation has something to change."""
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def _numbered_clip(frames: int = 16) -> np.ndarray:
    """uint8 [T, 8, 8, 3] whose frame t is filled with the value 10 * t (frames identified by their value)."""
    return np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(frames)])


def _ids(frames: np.ndarray) -> list[int]:
    return [int(f[0, 0, 0]) // 10 for f in frames]


def _high_frequency(frames: np.ndarray) -> float:
    return float(np.mean([np.abs(cv2.Laplacian(f.astype(np.float32), cv2.CV_32F)).mean() for f in frames]))


def _g() -> np.random.Generator:
    return np.random.default_rng(1)


def test_blur_lowers_high_frequency_energy_monotonically_with_strength():
    clip = _textured_clip()
    energies = [_high_frequency(clip)] + [_high_frequency(degrade.blur(clip, s)) for s in (0.5, 1.0, 2.0, 3.0)]
    assert all(a > b for a, b in zip(energies, energies[1:]))


def test_noise_grows_with_strength_and_is_seeded():
    clip = np.full((4, 16, 16, 3), 128, np.uint8)
    spreads = [degrade.noise(clip, s, _g()).astype(float).std() for s in (2, 8, 32)]
    assert spreads[0] < spreads[1] < spreads[2]
    assert np.array_equal(degrade.noise(clip, 8, _g()), degrade.noise(clip, 8, _g()))


def test_jpeg_changes_the_pixels_more_at_lower_quality():
    clip = _textured_clip()
    errors = [np.abs(degrade.jpeg(clip, s).astype(int) - clip).mean() for s in (10, 50, 90)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_colour_shift_moves_the_channel_means():
    clip = np.full((2, 8, 8, 3), 100, np.uint8)
    shifted = degrade.colour_shift(clip, 20)
    assert shifted[..., 0].mean() == 120 and shifted[..., 1].mean() == 100 and shifted[..., 2].mean() == 80


def test_lost_resolution_keeps_the_size_and_removes_detail():
    clip = _textured_clip()
    low = degrade.lost_resolution(clip, 4)
    assert low.shape == clip.shape and _high_frequency(low) < 0.5 * _high_frequency(clip)


def test_shuffle_permutes_frames_and_moves_the_chosen_fraction():
    clip = _numbered_clip()
    full = _ids(degrade.shuffle(clip, 1.0, _g()))
    assert sorted(full) == list(range(16)) and all(i != t for t, i in enumerate(full))
    half = _ids(degrade.shuffle(clip, 0.5, _g()))
    assert sorted(half) == list(range(16)) and sum(i != t for t, i in enumerate(half)) == 8


def test_reversal_reverses():
    assert _ids(degrade.reverse(_numbered_clip())) == list(range(15, -1, -1))


def test_freezing_repeats_the_frame_before_the_frozen_tail():
    assert _ids(degrade.freeze(_numbered_clip(), 0.25)) == list(range(12)) + [11] * 4
    assert _ids(degrade.freeze(_numbered_clip(), 1.0)) == [0] * 16


def test_stutter_keeps_the_frame_count_and_shows_dropped_frames_as_the_last_kept_one():
    ids = _ids(degrade.stutter(_numbered_clip(), 0.5, _g()))
    assert len(ids) == 16 and ids[0] == 0 and len(set(ids)) == 8
    assert all(b in (a, t) for t, (a, b) in enumerate(zip(ids, ids[1:]), start=1))  # a repeat or the frame itself


def test_slow_motion_samples_the_source_at_t_over_the_factor():
    slow = degrade.slow_motion(_numbered_clip(), 2.0)
    assert len(slow) == 16
    assert [int(f[0, 0, 0]) for f in slow] == [5 * t for t in range(16)]  # 10 * (t / 2), blended halfway


def test_set_level_degradations_change_nested_clips():
    weak, strong = chosen_clips(24, 0.25, 0, "reverse"), chosen_clips(24, 0.75, 0, "reverse")
    assert len(weak) == 6 and len(strong) == 18 and strong[:6] == weak


def test_every_family_has_a_degradation_and_the_demo_runs_each_at_four_strengths():
    assert {d.family for d in DEGRADATIONS.values()} == set(FAMILIES)
    demo = load_sanity_config("demo")
    assert {d.name for d in demo.degradations} == set(DEGRADATIONS)
    assert all(len(d.strengths) >= 4 for d in demo.degradations) and demo.world.seed == 9001


def test_a_world_seed_reserved_for_detector_training_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("world: {seed: 7002}\ndegradations: [{name: blur, strengths: [1]}]\n")
    with pytest.raises(ConfigError, match="reserved"):
        load_sanity_config(path)
    path.write_text("degradations: [{name: blurr, strengths: [1]}]\n")
    with pytest.raises(ConfigError, match="did you mean.*blur"):
        load_sanity_config(path)


def _curve(values, floor=(0.0, 2.0), higher_is_better=False):
    return Curve([0, 1, 2, 3, 4], values, floor, higher_is_better)


def test_verdicts_on_toy_curves():
    assert judge(_curve([1, 1.5, 3, 5, 9]))["verdict"] == "responds"
    assert judge(_curve([1, 1.2, 1.1, 1.5, 1.9]))["verdict"] == "blind"
    assert judge(_curve([1, 0.5, -1, -2, -3]))["verdict"] == "wrong direction"
    assert judge(_curve([1, 1.5, 1.8, 1.9, 6]))["verdict"] == "weak"  # beyond the floor only at the end
    assert judge(_curve([1, 5, 2, 6, 1]))["verdict"] == "weak"  # not monotone
    assert judge(_curve([1, None, 3, 5, 9]))["verdict"] == "n/a"


def test_a_higher_is_better_metric_responds_by_falling():
    falling = judge(_curve([30, 28, 25, 20, 10], floor=(29, 31), higher_is_better=True))
    assert falling["verdict"] == "responds" and falling["spearman"] == pytest.approx(1.0)
    assert judge(_curve([30, 32, 35, 40, 50], floor=(29, 31), higher_is_better=True))["verdict"] == "wrong direction"


def test_spearman_is_undefined_for_a_constant_curve_and_one_for_a_monotone_one():
    assert spearman([0, 1, 2], [4, 4, 4]) is None
    assert spearman([0, 1, 2, 3], [1, 2, 8, 9]) == pytest.approx(1.0)


def test_a_missing_or_empty_real_folder_is_one_error_line_naming_it(tmp_path, capsys):
    assert run_command(main, ["--real", str(tmp_path / "nowhere"), "--no-progress"]) == 2  # a user's error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and err[0].startswith("error:")
    (tmp_path / "empty").mkdir()
    assert run_command(main, ["--real", str(tmp_path / "empty"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty" in err[0]


def test_the_instrument_hook_changes_only_the_instruments_and_leaves_default_clips_identical():
    from ophora.sim.patient import sample_patient
    from ophora.sim.render import render_phase

    patient = sample_patient(5, "sim_0000")
    plain, _ = render_phase(patient, 2, 8, (64, 64), 5)
    again, _ = render_phase(patient, 2, 8, (64, 64), 5, instrument=None)
    foreign, _ = render_phase(patient, 2, 8, (64, 64), 5, instrument="iol_injector")
    assert np.array_equal(plain, again)
    changed = (plain != foreign).any(axis=-1).mean()
    assert 0 < changed < 0.5
    with pytest.raises(ValueError, match="unknown instrument"):
        render_phase(patient, 2, 8, (64, 64), 5, instrument="scalpel")


_TINY = """
name: tiny
world: {videos: 1, seed: 9001, frames: 16, size: [64, 64]}
work: WORK
output: OUT
options: {tiny_i3d: true, clip_model: ophora-tiny-clip, clip_frames: 2}
bootstrap: 10
efficiency: {enabled: false}  # the sample-efficiency study has its own tests
scorers:
  - {protocol: fvd/stylegan-v, weights: random-init}
  - {protocol: clipscore/open_clip, weights: random-init}
  - {protocol: fid/not-registered-yet}
degradations:
  - {name: blur, strengths: [1.0, 3.0]}
  - {name: mode_collapse, strengths: [0.5, 1.0]}
  - {name: wrong_instrument, strengths: [0.5, 1.0]}
  - {name: wrong_phase_prompt, strengths: [0.5, 1.0]}
"""


@pytest.mark.slow
def test_a_tiny_run_writes_table_json_and_plot_and_a_rerun_recomputes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "tiny.yaml"
    config.write_text(_TINY.replace("WORK", str(tmp_path / "work")).replace("OUT", str(tmp_path / "out")))
    assert main(["--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "out" / "tiny"
    for name in ("table.md", "table.csv", "verdicts.md", "results.json", "curves.png"):
        assert (out / name).stat().st_size > 0
    result = json.loads((out / "results.json").read_text())
    assert result["format"] == "ophora-sanity/1" and result["seed"] == 0 and "git_commit" in result["provenance"]
    assert result["sets_scored_in_this_run"] == 9  # the floor and 2 strengths of 4 degradations
    assert any("fid/not-registered-yet: skipped" in note for note in result["notes"])
    assert len(result["curves"]) == 2 * 4 and not any(str(tmp_path) in v for v in result["roots"].values())
    verdicts = {(c["scorer"], c["degradation"]): c["verdict"] for c in result["curves"]}
    assert verdicts[("fvd/stylegan-v [random-init]", "blur")] == "responds"  # blur at sigma 3 px on 64x64 frames
    assert verdicts[("fvd/stylegan-v [random-init]", "wrong_phase_prompt")] == "blind"  # the same pixels
    table = (out / "table.md").read_text()
    assert "| spatial | blur | fvd/stylegan-v [random-init] |" in table and "real vs real" in table
    sets = sorted((tmp_path / "work").rglob("set.json"))
    stamps = [p.stat().st_mtime_ns for p in sets]

    assert main(["--config", str(config), "--no-progress"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["sets_scored_in_this_run"] == 0 and again["curves"] == result["curves"]
    assert [p.stat().st_mtime_ns for p in sets] == stamps

    world = next((tmp_path / "work" / "worlds").iterdir())
    plain = tmp_path / "plain.yaml"  # a folder of videos: no labels, no prompts
    plain.write_text(_TINY.replace("WORK", str(tmp_path / "work")).replace("OUT", str(tmp_path / "out"))
                     .replace("name: tiny", "name: plain").replace("[1.0, 3.0]", "[3.0]"))
    assert main(["--config", str(plain), "--real", str(world / "ophora_instructions" / "clips"),
                 "--no-progress"]) == 0
    notes = json.loads((tmp_path / "out" / "plain" / "results.json").read_text())["notes"]
    for skipped in ("mode_collapse", "wrong_instrument", "wrong_phase_prompt", "clipscore/open_clip [random-init]"):
        assert any(note.startswith(f"{skipped}: skipped") for note in notes), (skipped, notes)
    assert os.path.isfile(tmp_path / "out" / "plain" / "curves.png")


def test_new_shipped_surgical_weights_change_the_score_cache_key_and_published_ones_keep_it(monkeypatch):
    import dataclasses

    from benchmarks.sanity.score import ScoreGroup, group_scorers, resolve_scorers
    from ophora import weights as W

    cfg = load_sanity_config("demo")
    scorers, _ = resolve_scorers(cfg, True)
    before = {tuple(s.label for s in g): ScoreGroup(g, cfg, "scores").folder for g in group_scorers(scorers)}
    surgical = next(k for k in before if "FID surgical" in k)
    published = next(k for k in before if "FID pytorch-fid (random-init)" in k)
    entry = W.REGISTRY["ophsim-surgical:frame"]
    monkeypatch.setitem(W.REGISTRY, entry.name, dataclasses.replace(entry, sha256="0" * 64))
    after = {tuple(s.label for s in g): ScoreGroup(g, cfg, "scores").folder for g in group_scorers(scorers)}
    assert after[surgical] != before[surgical]  # scores of the old detector are not reused
    assert after[published] == before[published]


def test_one_swap_at_the_weakest_strength_is_spearman_0_9_and_still_responds():
    # scipy gives 0.8999999999999998 for this exact 0.9; the threshold is inclusive
    curve = Curve([0, 4, 8, 16, 32], [11.6, 11.5, 17.6, 30.0, 74.0], (8.0, 14.0), False)
    result = judge(curve)
    assert result["spearman"] == pytest.approx(0.9) and result["verdict"] == "responds"
    assert judge(Curve([0, 4, 8, 16, 32], [11.6, 11.5, 13.0, 30.0, 74.0], (8.0, 14.0), False))["verdict"] == "weak"


def _demo_groups():
    from benchmarks.sanity.score import ScoreGroup, group_scorers, resolve_scorers

    cfg = load_sanity_config("demo")
    scorers, notes = resolve_scorers(cfg, True)
    return {tuple(s.label for s in g): ScoreGroup(g, cfg, "scores") for g in group_scorers(scorers)}, notes


def _group_of(groups, label):
    return next(g for labels, g in groups.items() if label in labels)


def test_kernel_scorers_join_the_pass_whose_detector_they_name_under_features():
    groups, notes = _demo_groups()
    surgical, tiny = _group_of(groups, "KVD surgical"), _group_of(groups, "KVD (random-init tiny I3D)")
    assert "FVD surgical" in [s.label for s in surgical.scorers]  # the very features FVD surgical reads
    assert dict(surgical.template.protocols)["fvd"] == "fvd/ophsim-surgical"
    assert dict(surgical.template.detector_weights)["fvd"] == "pretrained"
    assert dict(tiny.template.protocols)["fvd"] == "fvd/stylegan-v" and tiny.template.tiny_i3d
    assert dict(tiny.template.detector_weights)["fvd"] == "random-init"
    formula = _group_of(groups, "JEDi formula surgical")  # kvd/jedi is a kvd protocol: never KVD surgical's pass
    assert formula is not surgical and dict(formula.template.protocols) == {"kvd": "kvd/jedi",
                                                                            "fvd": "fvd/ophsim-surgical"}
    assert dict(formula.template.detector_weights) == {"fvd": "pretrained"}
    assert dict(_group_of(groups, "KVMD (LK tracker)").template.protocols)["fvmd"] == "fvmd/opencv-lk"
    assert _group_of(groups, "KID surgical") is surgical  # KID on the surgical FID's frames, beside it
    for group in groups.values():  # one protocol per metric in a pass; FVD stylegan-v and videomae apart
        metrics = [m for m, _ in group.template.protocols]
        assert len(metrics) == len(set(metrics))
    assert any("KVD stylegan-v (published): skipped, published weights 'stylegan-v-i3d'" in n for n in notes)


def test_features_is_refused_where_it_cannot_apply_and_an_unknown_protocol_is_skipped(tmp_path):
    from benchmarks.sanity.config import SanityError
    from benchmarks.sanity.score import resolve_scorers

    def scorers(line):
        path = tmp_path / "s.yaml"
        path.write_text(f"scorers: [{line}]\ndegradations: [{{name: blur, strengths: [1]}}]\n")
        return resolve_scorers(load_sanity_config(path), True)

    with pytest.raises(SanityError, match="'features'.*fvd extracts its own"):
        scorers("{protocol: fvd/stylegan-v, features: fvd/tf}")
    with pytest.raises(SanityError, match="fvmd protocol; kvd is computed on fvd"):
        scorers("{protocol: kvd, features: fvmd/opencv-lk}")
    found, notes = scorers("{protocol: kvd, features: fvd/nowhere}")
    assert not found and notes[0].startswith("kvd on fvd/nowhere: skipped, features protocol not registered")
    (kvmd,), _ = scorers("{protocol: kvmd}")
    assert (kvmd.source, kvmd.features) == ("fvmd", "fvmd/opencv-lk")  # the default: the source's first protocol


def test_the_score_cache_key_follows_the_detector_that_kernel_scorers_read(monkeypatch):
    import dataclasses

    from benchmarks.metrics.fvmd import FVMD
    from ophora import weights as W

    before, _ = _demo_groups()
    entry = W.REGISTRY["ophsim-surgical:video"]
    monkeypatch.setitem(W.REGISTRY, entry.name, dataclasses.replace(entry, sha256="0" * 64))
    after, _ = _demo_groups()
    for label in ("KVD surgical", "JEDi formula surgical", "FVD surgical arch (random-init)"):
        assert _group_of(after, label).folder != _group_of(before, label).folder, label
    for label in ("KVD (random-init tiny I3D)", "JEDi formula (random-init tiny I3D)",
                  "FVD videomae (random-init tiny)"):
        assert _group_of(after, label).folder == _group_of(before, label).folder, label
    monkeypatch.undo()
    # a changed protocol field (here FVMD's eps) changes its pass's key and no other
    monkeypatch.setattr(FVMD, "protocols", (dataclasses.replace(FVMD.protocols[0], eps=1e-4),))
    changed, _ = _demo_groups()
    assert _group_of(changed, "FVMD (LK tracker)").folder != _group_of(before, "FVMD (LK tracker)").folder
    assert _group_of(changed, "KVD surgical").folder == _group_of(before, "KVD surgical").folder


_MOTION = """
name: motion
world: {videos: 1, seed: 9001, frames: 16, size: [64, 64]}
work: WORK
output: OUT
options: {tiny_i3d: true}
bootstrap: 20
set_bootstrap: 0
efficiency: {enabled: false}
scorers:
  - {protocol: fvmd/opencv-lk, label: FVMD}
  - {protocol: kvmd, label: KVMD}
  - {protocol: kvd, features: fvd/stylegan-v, weights: random-init, label: KVD tiny}
degradations:
  - {name: freeze, strengths: [1.0]}
"""


@pytest.mark.slow
def test_a_tiny_run_scores_fvmd_kvmd_and_kvd_on_the_tiny_i3d_in_one_pass(tmp_path, monkeypatch):
    from benchmarks.evaluate import EvalConfig, evaluate

    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "motion.yaml"
    config.write_text(_MOTION.replace("WORK", str(tmp_path / "work")).replace("OUT", str(tmp_path / "out")))
    assert main(["--config", str(config), "--no-progress"]) == 0
    result = json.loads((tmp_path / "out" / "motion" / "results.json").read_text())
    curves = {c["scorer"]: c for c in result["curves"]}
    assert set(curves) == {"FVMD", "KVMD", "KVD tiny"} and result["sets_scored_in_this_run"] == 2
    assert len(list((tmp_path / "work").rglob("group-*"))) == 1  # one pass: FVMD, KVMD and the FVD view of KVD
    # clips frozen whole have no motion: KVMD beyond its real-vs-real interval; FVMD (6 windows against 6 in
    # 1024-d: an interval as wide as the value) above its real-vs-real value
    assert curves["KVMD"]["values"][1] > curves["KVMD"]["high"][0] > curves["KVMD"]["values"][0]
    assert curves["FVMD"]["values"][1] > 1.1 * curves["FVMD"]["values"][0]
    assert curves["FVMD"]["detector"].startswith("opencv-lk") and curves["KVD tiny"]["detector"].startswith(
        "random-init:i3d-tiny")
    floor = json.loads(next((tmp_path / "work").rglob("floor.json")).read_text())["scores"]
    assert floor["KVD tiny"]["features"] == "fvd/stylegan-v" and floor["FVMD"]["n_fake"] == 6
    halves = next((tmp_path / "work").rglob("real"))
    direct = evaluate(EvalConfig(real=str(halves / "A"), fake=str(halves / "B"), metrics=("kvd",), tiny_i3d=True,
                                 bootstrap=0, progress=False, workers=0))
    assert floor["KVD tiny"]["value"] == pytest.approx(direct["metrics"]["kvd"]["value"], rel=1e-9)
