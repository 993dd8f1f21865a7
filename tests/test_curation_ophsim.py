"""Curation of an OphSim raw set with planted defects: filters against ground truth, outputs, kill and resume.

One world (6 surgeries x 12 phase clips, 16 frames of 128x128 at 8 fps, a defect planted in 60% of the clips,
seed 8: 10 cuts, 8 frozen, 9 low-resolution, 9 subtitled, 13 watermarked) is curated once per module with
two worker processes; the tests read that run. Resolution is judged against the world's nominal size.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from ophora.configs import build_config
from ophora.curation.config import CurationConfig, DynamicsConfig
from ophora.curation.dynamics import DynamicsStage
from ophora.curation.ledger import read_ledgers
from ophora.curation.run import ResumeError, curate
from ophora.curation.stage import ClipItem
from ophora.data import manifests
from ophora.data.video import read_video
from ophora.sim.captions import noise_markers
from ophora.sim.world import WorldConfig, build_world

pytestmark = pytest.mark.slow  # every test here shares a run of more than 5 s

WORLD = WorldConfig(videos=6, seed=8, frames=16, size=(128, 128), defects=0.6)
SETTINGS = {"resolution": {"min_width": 128, "min_height": 128}, "execution": {"shard_size": 8, "workers": 2}}
FILTERS = {"resolution": ["lowres"], "dynamics": ["cut", "frozen"], "privacy": ["subtitles", "watermark"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("curation_world")
    build_world(WORLD, out, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def curated(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    summary = curate(world / "ophvl_raw" / "raw.csv", out, build_config(CurationConfig, SETTINGS), progress=False)
    table = pd.read_parquet(out / "provenance.parquet").set_index("clip_id")
    truth = pd.read_csv(world / "ophvl_raw" / "defects.csv").set_index("clip_id")
    return out, summary, table, truth


def subset(world, name: str, count: int) -> Path:
    """A raw set of the world's first ``count`` clips, beside raw.csv (paths stay relative to the set's folder)."""
    path = world / "ophvl_raw" / f"{name}.csv"
    pd.read_csv(world / "ophvl_raw" / "raw.csv", keep_default_na=False).head(count).to_csv(path, index=False)
    return path


def precision_recall(table: pd.DataFrame, truth: pd.DataFrame, stage: str, kinds: list[str]) -> dict:
    """Over the clips that reached ``stage``: a clip is positive when one of ``kinds`` was planted in it."""
    entered = table[f"{stage}_status"] != "skipped"
    actual = truth.loc[table.index[entered], kinds].any(axis=1).to_numpy()
    flagged = (table.loc[entered, f"{stage}_status"] != "keep").to_numpy()
    tp, fp, fn = int((actual & flagged).sum()), int((~actual & flagged).sum()), int((actual & ~flagged).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1)}


@pytest.mark.parametrize("stage", list(FILTERS))
def test_each_filter_finds_the_planted_defects(curated, stage):
    _, _, table, truth = curated
    result = precision_recall(table, truth, stage, FILTERS[stage])
    print(f"{stage}: {result}")
    assert result["tp"] + result["fn"] >= 8, "too few planted defects reach this stage to measure it"
    assert result["precision"] >= 0.9 and result["recall"] >= 0.9, result
    for kind in FILTERS[stage]:  # every kind is found, not only most of the stage's targets
        kind_result = precision_recall(table, truth, stage, [kind])
        assert kind_result["recall"] >= 0.9, (kind, kind_result)


def test_dynamics_decoding_only_reference_frames_keeps_the_verdicts_of_every_frame(world, tmp_path):
    """The stage skips non-reference frames; on cut, frozen and clean clips it must reach the verdicts of
    decoding every frame, place each cut at the planted frame or the next, and still read truncated files and
    frame folders correctly."""
    raw = world / "ophvl_raw"
    truth = pd.read_csv(raw / "defects.csv").set_index("clip_id")
    paths = pd.read_csv(raw / "raw.csv", keep_default_na=False).set_index("clip_id")["path"]
    clean = truth.index[~truth[["cut", "frozen", "lowres", "subtitles", "watermark"]].any(axis=1)]
    chosen = list(truth.index[truth["cut"]][:5]) + list(truth.index[truth["frozen"]][:3]) + list(clean[:4])
    fast, every = DynamicsStage(DynamicsConfig()), DynamicsStage(DynamicsConfig())
    every.DECODE = {}  # every frame, with deblocking
    frames = {"fast": 0, "every": 0}
    for clip_id in chosen:
        item = ClipItem(clip_id, "", raw / paths[clip_id])
        got, reference = fast.check(item), every.check(item)
        assert (got.status, reference.status) == (("keep", "keep") if clip_id in clean else ("drop", "drop")), clip_id
        if truth.loc[clip_id, "cut"]:
            planted = json.loads(truth.loc[clip_id, "params"])["cut"]["cut_frame"]
            assert len(got.scores["cut_frames"]) == 1 and 0 <= got.scores["cut_frames"][0] - planted <= 1, got.scores
        frames["fast"] += got.scores["frames"]
        frames["every"] += reference.scores["frames"]
        assert got.scores["frames_covered"] == reference.scores["frames"] == WORLD.frames
    assert frames["fast"] < 0.8 * frames["every"], frames  # B-frames were skipped
    whole = (raw / paths[clean[0]]).read_bytes()
    (tmp_path / "cut_short.mp4").write_bytes(whole[: len(whole) * 2 // 3])
    broken = fast.check(ClipItem("short", "", tmp_path / "cut_short.mp4"))
    assert broken.error and broken.reason.startswith("unreadable video"), broken
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(read_video(raw / paths[clean[0]])):
        Image.fromarray(frame).save(folder / f"frame_{index}.png")
    as_folder = fast.check(ClipItem("folder", "", folder))
    assert as_folder.keep and as_folder.scores["frames"] == WORLD.frames, as_folder


def test_sets_are_in_the_ophora_layout_and_28k_is_a_subset(curated, world):
    out, summary, table, _ = curated
    full = manifests.read_instruction_set(out / "ophora_160k" / "instructions.csv")
    private = manifests.read_instruction_set(out / "ophora_28k" / "instructions.csv")
    assert [c.clip_id for c in full] == list(table.index[table["in_160k"]])
    assert {c.clip_id for c in private} == set(table.index[table["in_28k"]]) <= {c.clip_id for c in full}
    assert summary["in_160k"] == len(full) > summary["in_28k"] == len(private) > 0
    source = world / "ophvl_raw" / "clips" / f"{full[0].clip_id}.mp4"
    assert os.path.samefile(full[0].path, source)  # hard link by default
    for clip in full:
        assert not noise_markers(clip.instruction), clip.instruction


def test_provenance_explains_every_clip(curated):
    out, _, table, _ = curated
    csv = pd.read_csv(out / "provenance.csv", keep_default_na=False)
    assert list(csv["clip_id"]) == list(table.index) and table.index.is_unique and len(table) == 72
    dropped = table[~table["in_160k"]]
    assert (dropped["drop_stage"] != "").all() and (dropped["drop_reason"] != "").all()
    not_private = table[table["in_160k"] & ~table["in_28k"]]
    assert len(not_private) and (not_private["not_28k_reason"] != "").all()
    order = ["resolution", "dynamics", "rewrite", "privacy"]
    for clip_id, row in dropped.iterrows():
        at = order.index(row["drop_stage"])
        assert row[f"{order[at]}_status"] in ("drop", "error") and row[f"{order[at]}_reason"] == row["drop_reason"]
        assert all(row[f"{s}_status"] == "skipped" for s in order[at + 1:]), clip_id
        assert all(row[f"{s}_status"] == "keep" for s in order[:at]), clip_id
    kept = table[table["in_160k"]]
    assert (kept[[f"{s}_status" for s in order[:3]]] == "keep").all().all()
    scores = json.loads(kept.iloc[0]["dynamics_scores"])
    assert {"cuts", "cuts_per_second", "motion"} <= set(scores)
    assert kept.iloc[0]["resolution_version"].startswith("resolution/v1+")


def test_report_counts_every_stage(curated):
    out, summary, table, _ = curated
    report = (out / "report.md").read_text()
    for stage in summary["stages"]:
        assert f"| {stage['stage']} | {stage['entered']} | {stage['kept']} |" in report
    assert summary["stages"][0]["entered"] == 72
    assert summary["stages"][1]["entered"] == summary["stages"][0]["kept"]
    assert "scene cut" in report and "low resolution" in report and "watermark" in report
    assert (out / "report_counts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["resolution"]["min_width"] == 128 and run["provenance"]["packages"]["scenedetect"]


def test_unreadable_videos_and_bad_captions_are_recorded_and_the_run_goes_on(world, tmp_path):
    raw = world / "ophvl_raw"
    flags = pd.read_csv(raw / "defects.csv")[["cut", "frozen", "lowres", "subtitles", "watermark"]]
    rows = pd.read_csv(raw / "raw.csv", keep_default_na=False)[~flags.any(axis=1)].head(4).reset_index(drop=True)
    (raw / "broken").mkdir(exist_ok=True)
    (raw / "broken" / "half.mp4").write_bytes((raw / rows.loc[0, "path"]).read_bytes()[:900])
    (raw / "broken" / "empty.mp4").write_bytes(b"")
    extra = pd.DataFrame({"clip_id": ["missing", "half", "empty", "blank", "huge"],
                          "caption": ["the phaco tip"] * 3 + ["", "now the cannula flushes the chamber. " * 2000],
                          "source_video": "x", "start": 0.0, "end": 2.0,
                          "path": ["broken/nowhere.mp4", "broken/half.mp4", "broken/empty.mp4"]
                          + list(rows["path"][:2])})
    table = pd.concat([rows, extra], ignore_index=True)
    table.loc[1, "caption"] = "BADBYTES the cystotome punctures the capsule"
    data = table.to_csv(index=False).encode().replace(b"BADBYTES", b"\xff\xfe")
    (raw / "bad_rows.csv").write_bytes(data)
    summary = curate(raw / "bad_rows.csv", tmp_path / "out", build_config(CurationConfig,
        {"resolution": {"min_width": 128, "min_height": 128}}), progress=False)
    result = pd.read_parquet(tmp_path / "out" / "provenance.parquet").set_index("clip_id")
    assert len(result) == 9 and summary["input"] == 9
    assert result.loc["missing", "resolution_status"] == "error"
    assert "file does not exist" in result.loc["missing", "drop_reason"]
    assert "unreadable video" in result.loc["half", "drop_reason"] and "empty" in result.loc["empty", "drop_reason"]
    assert result.loc[rows.loc[1, "clip_id"], "rewrite_reason"].startswith("caption is not valid UTF-8")
    assert result.loc["blank", "rewrite_reason"] == "empty caption"
    huge = json.loads(result.loc["huge", "rewrite_scores"])
    assert result.loc["huge", "rewrite_status"] == "keep" and huge["input_truncated"] and huge["tokens"] <= 226
    assert "not valid UTF-8" in (tmp_path / "out" / "report.md").read_text()


def _ledger_lines(folder) -> int:
    return sum(p.read_bytes().count(b"\n") for p in folder.glob("shard-*.jsonl")) if folder.exists() else 0


def test_a_run_killed_with_sigkill_resumes_without_losing_or_duplicating_clips(world, curated, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SETTINGS))
    command = [sys.executable, "-m", "ophora.curate", "--input", str(world / "ophvl_raw" / "raw.csv"),
               "--out", str(out), "--config", str(tmp_path / "config.yaml"), "--quiet"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _ledger_lines(out / ".ledger") < 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-run
    process.wait()
    done_at_kill = len(read_ledgers(out / ".ledger"))
    assert 0 < done_at_kill < 72, f"the run was not killed mid-way ({done_at_kill} clips done)"
    summary = curate(world / "ophvl_raw" / "raw.csv", out, build_config(CurationConfig, SETTINGS), progress=False)
    assert summary["resumed_clips"] >= done_at_kill
    assert _ledger_lines(out / ".ledger") == 72  # one line per clip over all shards: nothing lost, nothing twice
    resumed = pd.read_parquet(out / "provenance.parquet").set_index("clip_id")
    reference = curated[2]
    for column in ("in_160k", "in_28k", "instruction", "drop_stage"):
        assert resumed[column].equals(reference[column]), column


def test_resuming_with_other_stage_settings_is_refused(world, curated):
    out = curated[0]
    other = build_config(CurationConfig, {**SETTINGS, "dynamics": {"threshold": 40.0}})
    with pytest.raises(ResumeError, match="other stage settings"):
        curate(world / "ophvl_raw" / "raw.csv", out, other, progress=False)


def test_ray_executor_gives_the_same_verdicts(world, curated, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ophora[ray]'")
    config = build_config(CurationConfig, {**SETTINGS, "execution": {"executor": "ray", "workers": 2, "shard_size": 4}})
    curate(subset(world, "first16", 16), tmp_path / "out", config, progress=False)
    result = pd.read_parquet(tmp_path / "out" / "provenance.parquet").set_index("clip_id")
    reference = curated[2].loc[result.index]
    for column in ("in_160k", "in_28k", "instruction", "drop_reason"):
        assert result[column].equals(reference[column]), column
    assert len(list((tmp_path / "out" / ".ledger").glob("shard-*.jsonl"))) == 4


def test_symlink_and_copy_modes(world, tmp_path):
    raw = subset(world, "first3", 3)
    for link in ("symlink", "copy"):
        settings = {**SETTINGS, "execution": {"workers": 1}, "output": {"link": link}}
        curate(raw, tmp_path / link, build_config(CurationConfig, settings), progress=False)
        clips = list((tmp_path / link / "ophora_160k" / "clips").iterdir())
        assert clips and all(c.is_symlink() == (link == "symlink") for c in clips)
        assert all(not os.path.samefile(c, world / "ophvl_raw" / "clips" / c.name) for c in clips) or link == "symlink"
