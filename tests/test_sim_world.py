"""OphSim worlds: the three datasets read back through the manifest readers, determinism, resume, and
planted defects that the tools the curation stage will use actually see."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scenedetect import ContentDetector, detect

from ophora.data import manifests
from ophora.data.video import probe, read_video
from ophora.sim.__main__ import main as sim_main
from ophora.sim.phases import operations, phase_of_operation, phases
from ophora.sim.world import WorldConfig, assign_splits, build_world

SMALL = dict(frames=20, size=(64, 80))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    config = WorldConfig(videos=3, seed=7, defects=0.6, **SMALL)
    summary = build_world(config, out, progress=False)
    return out, config, summary


@pytest.mark.slow
def test_raw_and_instruction_sets_read_back_with_every_clip(world):
    out, config, _ = world
    raw = manifests.read_raw_set(out / "ophvl_raw" / "raw.csv")
    instructions = manifests.read_instruction_set(out / "ophora_instructions" / "instructions.csv")
    assert len(raw) == len(instructions) == config.videos * len(phases())
    assert [c.clip_id for c in raw] == [c.clip_id for c in instructions]
    assert len({c.source_video for c in raw}) == config.videos
    for clip in raw:
        assert clip.end - clip.start == pytest.approx(config.frames / config.fps, abs=1e-3)
    assert probe(instructions[0].path).num_frames == config.frames
    assert (probe(instructions[0].path).height, probe(instructions[0].path).width) == config.size


def test_ophnet_set_has_real_columns_consistent_labels_and_patient_splits(world):
    out, config, _ = world
    segments = out / "ophnet" / "segments"
    ops = manifests.read_ophnet_csv(out / "ophnet" / "OphSim_loca_operation.csv", videos_root=segments,
                                    check_files=True)
    phase_rows = manifests.read_ophnet_csv(out / "ophnet" / "OphSim_loca_phase.csv", videos_root=segments,
                                           check_files=True)
    assert list(ops.columns[:7]) == ["video_id", "start", "end", "split", "surgery_id", "phase_id", "operation_id"]
    assert "operation_id" not in phase_rows.columns
    assert len(phase_rows) == config.videos * len(phases())
    assert len(ops) == config.videos * len(operations())
    for row in ops.itertuples():
        assert phase_of_operation(row.operation_id).phase_id == row.phase_id
    assert ops.groupby("video_id")["split"].nunique().max() == 1  # split by patient
    assert set(ops["split"]) == {"train", "val", "test"}


def test_ophnet_times_match_segment_files_and_untrimmed_video(world):
    out, config, _ = world
    ops = manifests.read_ophnet_csv(out / "ophnet" / "OphSim_loca_operation.csv")
    for row in ops.head(8).itertuples():
        frames = probe(out / "ophnet" / "segments" / row.segment_path).num_frames
        assert frames == round((row.end - row.start) * config.fps)
    untrimmed = out / "ophnet" / "videos" / f"{ops.video_id.iloc[0]}.mp4"
    assert probe(untrimmed).num_frames == len(phases()) * config.frames
    row = ops.iloc[3]
    trimmed = read_video(out / "ophnet" / "segments" / row.segment_path)
    on_the_fly = read_video(untrimmed, window=(row.start, row.end))
    assert trimmed.shape == on_the_fly.shape
    assert np.abs(trimmed.astype(int) - on_the_fly.astype(int)).mean() < 3  # two encodes of the same frames


def defect_table(out) -> pd.DataFrame:
    return pd.read_csv(out / "ophvl_raw" / "defects.csv").set_index("clip_id")


def clip_path(out, clip_id, dataset="ophvl_raw"):
    return out / dataset / "clips" / f"{clip_id}.mp4"


def test_defect_flags_are_truthful(world):
    out, config, summary = world
    flags = defect_table(out)
    flagged = flags[["cut", "frozen", "lowres", "subtitles", "watermark"]].sum().sum()
    assert flagged == sum(summary["counts"]["defects"].values())
    assert 0 < flags.drop(columns="params").any(axis=1).sum() < len(flags)
    for clip_id, row in flags.iterrows():
        frames = read_video(clip_path(out, clip_id)).astype(np.float32)
        clean = read_video(clip_path(out, clip_id, "ophora_instructions")).astype(np.float32)
        motion = np.abs(np.diff(frames, axis=0)).mean()  # mean absolute change per frame step, grey levels
        assert (motion < 0.5) == bool(row.frozen), (clip_id, motion)
        assert (frames.shape[1:3] != clean.shape[1:3]) == bool(row.lowres)
        if row.subtitles or row.watermark:
            assert np.abs(frames - clean).mean() > 0.5


def test_planted_cuts_are_found_by_pyscenedetect_and_clean_clips_have_none(world):
    out, _, _ = world
    flags = defect_table(out)
    checked = flags[flags.cut | ~flags.drop(columns="params").any(axis=1)]
    assert flags.cut.sum() >= 1
    for clip_id, row in checked.iterrows():
        # min_scene_len below the default 15 so that cuts in these short 20-frame clips can be reported
        scenes = detect(str(clip_path(out, clip_id)), ContentDetector(threshold=27, min_scene_len=4),
                        show_progress=False)
        if row.cut:
            cut_frame = json.loads(row.params)["cut"]["cut_frame"]
            assert len(scenes) == 2 and abs(scenes[1][0].frame_num - cut_frame) <= 1, clip_id
        else:
            assert len(scenes) <= 1, clip_id


@pytest.mark.slow
def test_same_seed_same_world_and_another_seed_differs(tmp_path):
    config = WorldConfig(videos=1, seed=3, **SMALL)
    a = build_world(config, tmp_path / "a", progress=False)
    b = build_world(config, tmp_path / "b", progress=False)
    build_world(WorldConfig(videos=1, seed=4, **SMALL), tmp_path / "c", progress=False)
    assert a["counts"] == b["counts"] and a["patients"] == b["patients"]
    first = sorted((tmp_path / "a" / "ophora_instructions" / "clips").iterdir())[0].name
    frames_a = read_video(tmp_path / "a" / "ophora_instructions" / "clips" / first)
    frames_b = read_video(tmp_path / "b" / "ophora_instructions" / "clips" / first)
    np.testing.assert_array_equal(frames_a, frames_b)
    csv_a = (tmp_path / "a" / "ophora_instructions" / "instructions.csv").read_text()
    assert csv_a == (tmp_path / "b" / "ophora_instructions" / "instructions.csv").read_text()
    assert csv_a != (tmp_path / "c" / "ophora_instructions" / "instructions.csv").read_text()


@pytest.mark.slow
def test_resume_keeps_finished_surgeries_and_rejects_other_settings(tmp_path):
    config = WorldConfig(videos=2, seed=1, **SMALL)
    build_world(config, tmp_path, progress=False)
    kept = tmp_path / "ophnet" / "videos" / "case_0001.mp4"
    kept_mtime = kept.stat().st_mtime_ns
    csv_before = (tmp_path / "ophvl_raw" / "raw.csv").read_text()
    (tmp_path / ".progress" / "case_0002.json").unlink()  # as if killed while writing the second surgery
    (tmp_path / "ophvl_raw" / "raw.csv").unlink()
    build_world(config, tmp_path, progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert (tmp_path / "ophvl_raw" / "raw.csv").read_text() == csv_before
    with pytest.raises(ValueError, match="other settings"):
        build_world(WorldConfig(videos=3, seed=1, **SMALL), tmp_path, progress=False)


def test_no_temporary_files_are_left(world):
    out, _, _ = world
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_splits_are_by_patient_and_cover_all_three():
    for count in (3, 5, 10, 40):
        labels = assign_splits(count, seed=0)
        assert {"train", "val", "test"} <= set(labels)
        assert labels.count("train") >= labels.count("val")
    assert assign_splits(2, 0) == ["train", "train"]


def test_cli_writes_world_and_rejects_bad_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as in the README
    assert sim_main(["--out", "w", "--videos", "1", "--frames", "12", "--size", "64x64",
                     "--quiet", "--contact-sheet", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    world_json = json.loads((tmp_path / "w" / "world.json").read_text())
    assert world_json["config"]["videos"] == 1 and world_json["seed"] == 0 and "git_commit" in world_json["provenance"]
    assert sim_main(["--out", str(tmp_path / "x"), "--size", "63x64"]) == 2
    assert "even" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sim_main(["--out", str(tmp_path / "x"), "--size", "big"])
