"""downstream.synthetic: prompts per class, K clips per class from a tiny Ophora model, resuming, external
folders, mixing at a ratio and confidence filtering."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from downstream.synthetic import (
    RECORD_NAME,
    UNLABELLED,
    ClassPrompt,
    class_prompts,
    keep_confident,
    make_synthetic,
    mix,
    ophsim_class_prompts,
    ophsim_parents,
    phase_of_operations,
    resolve_paths,
)
from ophora.data.bundled import package_file
from ophora.data.manifests import ManifestError, bundled_ophnet_csv, read_generated, read_ophnet_csv
from ophora.data.video import read_video
from ophora.sim.phases import phases

PHASE_PROMPTS = package_file("ophora/sim/data/phase_prompts.csv")  # Ophora's Cataract-1K prompts, shipped
OPHNET_CHALLENGE = bundled_ophnet_csv("OphNet2024_loca_challenge.csv")
NAMES = {p.phase_id: p.name for p in phases()}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# --------------------------------------------------------------------------------------------------------
# Prompts per class


def test_class_prompts_from_the_real_phase_prompts_csv():
    prompts = class_prompts("phase", list(range(12)), csv=PHASE_PROMPTS, names=NAMES)
    assert [p.label for p in prompts] == list(range(12))
    assert prompts[7].text.startswith("An intraocular lens (IOL) is loaded into an injector")
    assert [p.text for p in prompts] == [p.caption_prompt for p in phases()]
    upper = {c: name.upper() for c, name in NAMES.items()}  # names match case-insensitively
    subset = class_prompts("phase", [9, 2], csv=PHASE_PROMPTS, names=upper)
    assert [p.label for p in subset] == [2, 9] and subset[0].text == phases()[2].caption_prompt


def _prompt_csv(path: Path, clip_ids: list[str]) -> Path:
    rows = [{"phase prompt": f"phase {c}", "clip id": c, "caption prompt": f"caption of {c}"} for c in clip_ids]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_several_prompts_per_class_and_skipped_classes(tmp_path):
    csv = _prompt_csv(tmp_path / "p.csv", ["incision_1", "capsulorhexis_1", "incision_2", "viscoelastic_1"])
    prompts = class_prompts("phase", [0, 2], csv=csv, names=NAMES)
    assert prompts == [ClassPrompt(0, "caption of incision_1"), ClassPrompt(2, "caption of capsulorhexis_1"),
                       ClassPrompt(0, "caption of incision_2")]


def test_unknown_phase_name_names_the_row(tmp_path):
    csv = _prompt_csv(tmp_path / "p.csv", ["incision_1", "viscoelastic_1", "capsulorexis_1"])
    with pytest.raises(ValueError, match=r"data row 3, column 'clip id' \('capsulorexis_1'\).*unknown class name "
                                         r"'capsulorexis'.*did you mean 'capsulorhexis'"):
        class_prompts("phase", [0], csv=csv, names=NAMES)


def test_a_class_without_prompt_and_bad_arguments_are_refused(tmp_path):
    csv = _prompt_csv(tmp_path / "p.csv", ["incision_1"])
    with pytest.raises(ValueError, match=r"no prompt for class\(es\) 1 \('viscoelastic'\)"):
        class_prompts("phase", [0, 1], csv=csv, names=NAMES)
    with pytest.raises(ValueError, match="needs names="):
        class_prompts("phase", [0], csv=csv)
    with pytest.raises(ValueError, match="exactly one of csv= .* or template="):
        class_prompts("phase", [0])
    with pytest.raises(KeyError, match="unknown task 'phases'"):
        class_prompts("phases", [0], template="{id}")
    with pytest.raises(ValueError, match="lists an id twice"):
        class_prompts("phase", [0, 0], template="{id}")


def test_class_prompts_from_a_template():
    template = "Cataract surgery video, {name} phase."
    names = {4: "phacoemulsification", 0: "incision", 7: "lens implantation"}
    prompts = class_prompts("phase", [0, 4, 7], template=template, names=names)
    assert prompts == [ClassPrompt(0, "Cataract surgery video, incision phase."),
                       ClassPrompt(4, "Cataract surgery video, phacoemulsification phase."),
                       ClassPrompt(7, "Cataract surgery video, lens implantation phase.")]
    assert [p.text for p in class_prompts("operation", [3, 5], template="operation {id}")] == ["operation 3",
                                                                                             "operation 5"]
    with pytest.raises(ValueError, match="no name for class 7"):
        class_prompts("phase", [0, 7], template=template, names={0: "incision"})


def test_ophsim_prompts_cover_its_phases_and_operations():
    phase_prompts = ophsim_class_prompts("phase")
    assert [p.label for p in phase_prompts] == list(range(12))
    ops = ophsim_class_prompts("operation")
    assert [p.label for p in ops] == list(range(19)) and len({p.text for p in ops}) == 19
    assert ops[4].text.startswith("Circular capsular tear with the capsulorhexis forceps")
    assert ophsim_parents()[4] == 2 and ophsim_parents()[18] == 11 and len(ophsim_parents()) == 19


# --------------------------------------------------------------------------------------------------------
# make_synthetic with a tiny Ophora model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ophora.sim.world import WorldConfig, build_world

    out = tmp_path_factory.mktemp("syn_world") / "world"
    build_world(WorldConfig(videos=1, seed=0, frames=9, size=(64, 64), defects=0.0), out, progress=False)
    return out


@pytest.fixture(scope="module")
def model(world, tmp_path_factory):
    import baselines

    manifest = world / "ophora_instructions" / "instructions.csv"
    return baselines.get("ophora").train(manifest, tmp_path_factory.mktemp("syn_model") / "tpt",
                                         overrides={"train.tpt.max_steps": 2})


@pytest.fixture(scope="module")
def phase_set(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("syn_phase")
    csv = make_synthetic("ophora", model, ophsim_class_prompts("phase"), out, task="phase", clips_per_class=2, seed=3)
    return out, csv


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_k_clips_per_class_in_ophnet_format(phase_set):
    out, csv = phase_set
    assert csv == out / "synthetic_phase.csv"
    frame = read_ophnet_csv(csv, videos_root=csv.parent, check_files=True)
    assert len(frame) == 24 and frame["phase_id"].value_counts().to_dict() == {c: 2 for c in range(12)}
    assert "operation_id" not in frame.columns
    assert (frame["split"] == "train").all() and (frame["start"] == 0.0).all()
    assert frame["end"].tolist() == pytest.approx([9 / 8] * 24)  # tiny preset: 9 frames at 8 fps
    assert (frame["surgery_id"] == UNLABELLED).all() and frame["video_id"].is_unique
    assert read_video(out / frame["segment_path"].iat[0]).shape == (9, 32, 32, 3)
    # the label is the class the clip was prompted with, as the generator's manifest recorded it
    records = {f"phase/{r.path.name}": r for r in read_generated(out / "phase")}
    texts = {p.label: p.text for p in ophsim_class_prompts("phase")}
    for path, label in zip(frame["segment_path"], frame["phase_id"]):
        assert records[path].prompt == texts[label] and records[path].extra["source"]["label"] == label


def test_record_says_what_made_the_clips(phase_set, model):
    import json

    out, _ = phase_set
    record = json.loads((out / "phase" / "synthetic.json").read_text())
    assert (record["generator"], record["model"], record["task"], record["seed"]) == ("ophora", str(model), "phase", 3)
    assert record["clips_per_class"] == 2 and record["clips"] == 24 and len(record["checkpoint_hashes"]) == 1
    assert len(record["prompts"]) == 12 and "provenance" in record


def test_rerun_writes_nothing_new_and_more_clips_keep_the_old_ones(phase_set, model, tmp_path):
    out, csv = phase_set
    before, text = _files(out / "phase"), csv.read_text()
    lines = (out / "phase" / "manifest.jsonl").read_text().count("\n")
    assert make_synthetic("ophora", model, ophsim_class_prompts("phase"), out, task="phase", clips_per_class=2,
                          seed=3) == csv
    after = _files(out / "phase")
    assert {k: v for k, v in after.items() if k.endswith(".mp4")} == {k: v for k, v in before.items()
                                                                       if k.endswith(".mp4")}
    assert (out / "phase" / "manifest.jsonl").read_text().count("\n") == lines and csv.read_text() == text
    # K=3 on a copy: 12 new clips, the first 24 untouched
    import shutil

    copy = tmp_path / "more"
    shutil.copytree(out, copy)
    old = _files(copy / "phase")
    more = read_ophnet_csv(make_synthetic("ophora", model, ophsim_class_prompts("phase"), copy, task="phase",
                                          clips_per_class=3, seed=3))
    assert more["phase_id"].value_counts().to_dict() == {c: 3 for c in range(12)}
    new = _files(copy / "phase")
    assert all(new[name] == stamp for name, stamp in old.items() if name.endswith(".mp4"))
    assert len([n for n in new if n.endswith(".mp4")]) == 36


def test_a_listed_clip_that_went_missing_is_reported(phase_set, model, tmp_path):
    import shutil

    out, _ = phase_set
    shutil.copytree(out, tmp_path / "copy")
    (tmp_path / "copy" / "phase" / "00005_00.mp4").unlink()
    with pytest.raises(ManifestError, match="row 6 .* video not found: expected .*copy/phase/00005_00.mp4"):
        make_synthetic("ophora", model, ophsim_class_prompts("phase"), tmp_path / "copy", task="phase",
                       clips_per_class=2, seed=3)


def test_other_prompts_or_seed_in_the_same_folder_are_refused(phase_set, model):
    out, _ = phase_set
    changed = [ClassPrompt(p.label, p.text + " Again.") for p in ophsim_class_prompts("phase")]
    with pytest.raises(ValueError, match="the classes or prompts changed: choose another out"):
        make_synthetic("ophora", model, changed, out, task="phase", clips_per_class=2, seed=3)
    with pytest.raises(ValueError, match=r"made otherwise .*'seed': \(3, 4\)"):
        make_synthetic("ophora", model, ophsim_class_prompts("phase"), out, task="phase", clips_per_class=2, seed=4)
    with pytest.raises(KeyError, match="unknown generator 'ophor'"):
        make_synthetic("ophor", model, ophsim_class_prompts("phase"), out / "x", task="phase", clips_per_class=1)
    with pytest.raises(ValueError, match="clips_per_class must be a positive integer"):
        make_synthetic("ophora", model, ophsim_class_prompts("phase"), out, task="phase", clips_per_class=0)


def test_operation_clips_carry_their_phase(model, tmp_path):
    prompts = [p for p in ophsim_class_prompts("operation") if p.label in (3, 4, 10)]
    csv = make_synthetic("ophora", model, prompts, tmp_path, task="operation", clips_per_class=1,
                         parents=ophsim_parents())
    frame = read_ophnet_csv(csv, videos_root=tmp_path, check_files=True)
    assert frame[["operation_id", "phase_id"]].values.tolist() == [[3, 2], [4, 2], [10, 6]]  # 10: capsule polishing
    without = make_synthetic("ophora", model, prompts, tmp_path / "no_parents", task="operation", clips_per_class=1)
    assert (read_ophnet_csv(without)["phase_id"] == UNLABELLED).all()


def test_external_folder_maps_prompts_back_to_classes(phase_set, tmp_path):
    source, _ = phase_set
    prompts = [p for p in ophsim_class_prompts("phase") if p.label in (1, 5)]
    with pytest.warns(UserWarning, match="20 video\\(s\\) have a prompt of no class"):
        csv = make_synthetic("external", source / "phase", prompts, tmp_path, task="phase", clips_per_class=2)
    frame = read_ophnet_csv(csv, videos_root=tmp_path, check_files=True)
    assert frame["phase_id"].tolist() == [1, 1, 5, 5]
    by_name = {r.path.name: r for r in read_generated(tmp_path / "phase")}
    for path in frame["segment_path"]:
        record = by_name[Path(path).name]
        original = Path(record.extra["external_path"])
        assert (tmp_path / path).read_bytes() == original.read_bytes()
        assert record.prompt == {p.label: p.text for p in prompts}[record.extra["source"]["label"]]
    assert [Path(by_name[Path(p).name].extra["external_path"]).name for p in frame["segment_path"]] == [
        "00001_00.mp4", "00013_00.mp4", "00005_00.mp4", "00017_00.mp4"]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="holds 2 video\\(s\\) .* 3 are needed"):
        make_synthetic("external", source / "phase", prompts, tmp_path / "more", task="phase", clips_per_class=3)


def test_official_code_folder_with_prompt_mapping(phase_set, tmp_path):
    """An external folder (ophora.data.external): .mp4 files and a frame folder (Endora's layout) plus a
    video,prompt CSV."""
    from PIL import Image

    source, _ = phase_set
    texts = {p.label: p.text for p in ophsim_class_prompts("phase")}
    official = tmp_path / "official"
    official.mkdir()
    for name, clip in (("a_0", "00001_00"), ("b_0", "00005_00"), ("b_1", "00017_00"), ("z", "00002_00")):
        (official / f"{name}.mp4").write_bytes((source / "phase" / f"{clip}.mp4").read_bytes())
    frames = read_video(source / "phase" / "00013_00.mp4")
    (official / "a_1").mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(official / "a_1" / f"frame_{i}.png")
    mapping = pd.DataFrame({"video": ["a_0.mp4", "a_1", "b_0", "b_1.mp4", "z"],
                            "prompt": [texts[1], texts[1], texts[5], texts[5], texts[2]]})
    mapping.to_csv(tmp_path / "prompts.csv", index=False)
    spec = f"external:{official}?prompts={tmp_path / 'prompts.csv'}"
    prompts = [p for p in ophsim_class_prompts("phase") if p.label in (1, 5)]
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="1 video\\(s\\) have a prompt of no class"):
        csv = make_synthetic("external", spec, prompts, out, task="phase", clips_per_class=2)
    frame = read_ophnet_csv(csv)
    assert frame["phase_id"].tolist() == [1, 1, 5, 5]
    assert frame["segment_path"].tolist() == ["phase/00000_00.mp4", "phase/00002_00", "phase/00001_00.mp4",
                                              "phase/00003_00.mp4"]
    assert frame["end"].tolist() == pytest.approx([9 / 8] * 4)  # frame folders are read at 8 fps
    assert np.array_equal(read_video(out / "phase" / "00002_00"), frames)
    assert (out / "phase" / "00003_00.mp4").read_bytes() == (official / "b_1.mp4").read_bytes()
    before = _files(out / "phase")
    with pytest.warns(UserWarning):
        assert make_synthetic("external", spec, prompts, out, task="phase", clips_per_class=2) == csv
    after = _files(out / "phase")
    assert after.pop(RECORD_NAME) > before.pop(RECORD_NAME) and after == before  # only the record is rewritten
    with pytest.raises(ValueError, match="need their prompts to be labelled"):
        make_synthetic("external", official, prompts, tmp_path / "unlabelled", task="phase", clips_per_class=1)


# --------------------------------------------------------------------------------------------------------
# mix and keep_confident


def _frame(prefix: str, labels: list[int], splits: list[str] | None = None) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame({"video_id": [f"{prefix}_{i:03d}" for i in range(n)], "start": 0.0, "end": 1.0,
                         "split": splits or ["train"] * n, "surgery_id": 0,
                         "phase_id": np.array(labels, dtype=np.int64),
                         "segment_path": [f"{prefix}/{i}.mp4" for i in range(n)]})


@pytest.fixture
def real():
    return _frame("case", [0] * 8 + [1] * 6 + [2] * 6, ["train"] * 16 + ["val"] * 2 + ["test"] * 2)


@pytest.fixture
def synthetic():
    return _frame("syn", [0] * 10 + [1] * 3 + [2] * 10)


def test_mix_gives_the_ratio_with_even_classes(real, synthetic):
    mixed = mix(real, synthetic, ratio=0.6, seed=0)  # 16 real train rows -> round(9.6) = 10 synthetic
    assert (mixed["source"] == "real").sum() == 20
    picked = mixed[mixed["source"] == "synthetic"]
    counts = picked["phase_id"].value_counts().to_dict()
    assert len(picked) == 10 and counts[1] == 3 and sorted([counts[0], counts[2]]) == [3, 4]
    assert picked["video_id"].is_unique and set(picked["video_id"]) <= set(synthetic["video_id"])
    assert mixed.iloc[:20].drop(columns="source").equals(real)
    even = mix(real, synthetic, ratio=0.375, seed=0)  # 6 rows: 2 per class
    assert even[even["source"] == "synthetic"]["phase_id"].value_counts().to_dict() == {0: 2, 1: 2, 2: 2}


def test_mix_is_deterministic_per_seed(real, synthetic):
    def picked(seed):
        mixed = mix(real, synthetic, ratio=0.5, seed=seed)
        return mixed.loc[mixed["source"] == "synthetic", "video_id"].tolist()

    assert picked(1) == picked(1)
    assert len({tuple(picked(s)) for s in range(6)}) > 1


def test_mix_ratio_zero_and_too_many(real, synthetic):
    only_real = mix(real, synthetic, ratio=0.0, seed=0)
    assert len(only_real) == 20 and set(only_real["source"]) == {"real"}
    with pytest.raises(ValueError, match="24 synthetic clips requested but only 23 exist"):
        mix(real, synthetic, ratio=1.5, seed=0)
    with pytest.raises(ValueError, match="ratio must be a finite number >= 0"):
        mix(real, synthetic, ratio=-0.1, seed=0)
    with pytest.raises(ValueError, match=r"phase_id \[7\], which no real clip has"):
        mix(real, _frame("syn", [0, 7]), ratio=0.1, seed=0)


def test_mix_of_the_files_make_synthetic_wrote(phase_set, world):
    out, csv = phase_set
    real = read_ophnet_csv(world / "ophnet" / "OphSim_loca_phase.csv")
    mixed = mix(real, read_ophnet_csv(csv), ratio=1.0, seed=0)
    assert len(mixed) == 24 and mixed.groupby("source")["phase_id"].nunique().to_dict() == {"real": 12,
                                                                                          "synthetic": 12}
    assert str(mixed["split"].dtype) == "category" and mixed["phase_id"].dtype == np.int64
    assert (mixed.loc[mixed["source"] == "real", "prompt"] == "").all()
    paths = resolve_paths(mixed, {"real": world / "ophnet" / "segments", "synthetic": out})
    assert all(path.is_file() for path in paths)


def test_keep_confident_keeps_exactly_the_assigned_clips(synthetic, caplog):
    labels = synthetic["phase_id"].to_numpy()

    def predict(frame: pd.DataFrame) -> np.ndarray:
        probs = np.full((len(frame), 4), 0.1)
        guess = np.where(np.arange(len(frame)) % 3 == 0, (labels + 1) % 3, labels)
        probs[np.arange(len(frame)), guess] = 0.5 + 0.02 * np.arange(len(frame))
        return probs

    with caplog.at_level(logging.INFO, logger="downstream.synthetic"):
        kept = keep_confident(synthetic, predict, "phase")
    expected = [i for i in range(len(synthetic)) if i % 3 != 0]
    assert kept.index.tolist() == expected
    report = kept.attrs["keep_confident"]["per_class"]
    assert report[0] == {"clips": 10, "kept": 6, "dropped": 4} and report[1]["dropped"] == 1
    assert "kept 6 of 10, dropped 4" in caplog.text
    strict = keep_confident(synthetic, predict, "phase", min_prob=0.7)  # own prob 0.5 + 0.02 i >= 0.7 -> i >= 10
    assert strict.index.tolist() == [i for i in expected if i >= 10]
    with pytest.raises(ValueError, match=r"shape \[N=23, C\]"):
        keep_confident(synthetic, lambda f: np.ones((3, 4)), "phase")
    with pytest.raises(ValueError, match="predict gives 2 classes"):
        keep_confident(synthetic, lambda f: np.ones((len(f), 2)), "phase")


def test_phase_of_operations_on_ophnet():
    parents = phase_of_operations(read_ophnet_csv(OPHNET_CHALLENGE))
    assert len(parents) == 107 and set(parents) == set(range(107))
    assert parents[2] == 3 and parents[8] == 6  # case_0002's first two clips
