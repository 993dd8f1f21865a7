"""fvmd/raft and fvmd/raft-small: the RAFT tracker selected by protocol (wiring of benchmarks/metrics/fvmd.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmarks.detectors.raft_tracker import RaftConfig, RaftTracker
from benchmarks.detectors.tracker import grid_points
from benchmarks.evaluate import EvalConfig, resolve_auto
from benchmarks.metrics import build, get_protocol
from benchmarks.metrics.base import describe
from benchmarks.metrics.fvmd import motion_features, motion_fields


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)


def test_raft_protocols_are_registered_recorded_and_name_their_weights():
    cfg = EvalConfig(real="", fake="")
    metric = build("fvmd", cfg, "fvmd/raft")
    assert metric.protocol.name == "fvmd/raft" and metric.detector_weights(cfg) == "raft_large:C_T_SKHT_V2"
    assert build("fvmd", cfg, "fvmd/raft-small").detector_weights(cfg) == "raft_small:C_T_V2"
    assert build("fvmd", cfg, "fvmd/opencv-lk").detector_weights(cfg) is None
    record = describe(get_protocol("fvmd/raft-small"))
    assert (record["arch"], record["num_flow_updates"], record["input"]) == ("raft_small", 12,
                                                                             "uint8 RGB [T, 256, 256, 3]")
    assert "PIPs++" in record["comparable"] and "raft_small:C_T_V2" in record["detector"]
    with pytest.raises(ValueError, match="arch must be one of"):
        dataclasses.replace(get_protocol("fvmd/raft"), arch="raft_huge")
    x = get_protocol("fvmd/raft").prepare(np.zeros((16, 48, 64, 3), np.uint8))
    assert tuple(x.shape) == (16, 256, 256, 3) and x.dtype == torch.uint8


def test_weights_auto_without_the_file_falls_back_to_random_init_and_says_why():
    cfg, choices = resolve_auto(EvalConfig(real="", fake="", metrics=("fvmd",), weights="auto",
                                           protocols=(("fvmd", "fvmd/raft"),)))
    assert choices["fvmd"]["weights"] == "random-init" and "raft_large:C_T_SKHT_V2" in choices["fvmd"]["why"]
    default = resolve_auto(EvalConfig(real="", fake="", metrics=("fvmd",), weights="auto"))[1]
    assert default["fvmd"]["protocol"] == "fvmd/opencv-lk"  # the default tracker needs no file


def test_features_of_a_translation_equal_the_analytic_tracks_over_every_window():
    protocol = get_protocol("fvmd/raft")

    def flow_fn(img1, img2):
        flow = torch.zeros(len(img1), 2, *img1.shape[-2:])
        flow[:, 0] = 0.3
        return flow

    tracker = RaftTracker(None, RaftConfig(), flow_fn=flow_fn)
    batch = torch.zeros(2, 18, 256, 256, 3, dtype=torch.uint8)
    rows = protocol.detector_features(tracker, batch)
    tracks = grid_points((256, 256), 20, 8.0)[None, None] + np.arange(16)[None, :, None, None] * [0.3, 0.0]
    expected = motion_features(*motion_fields(np.repeat(tracks, 3, axis=0).astype(np.float32)))
    assert rows.shape == (6, 1024)  # 3 windows per 18-frame video
    np.testing.assert_allclose(rows, np.concatenate([expected, expected]), atol=1e-9)


@pytest.mark.slow
def test_random_init_raft_small_through_the_protocol():
    protocol = dataclasses.replace(get_protocol("fvmd/raft-small"), num_flow_updates=1)
    cfg = EvalConfig(real="", fake="")
    tracker, info = protocol.load_detector("random-init", cfg)
    assert info.identifier == "random-init:raft_small:seed=0" and info.protocol == "fvmd/raft-small"
    frames = np.random.default_rng(0).integers(0, 256, (17, 32, 32, 3), dtype=np.uint8)
    batch = protocol.prepare(frames)[None]
    rows = protocol.detector_features(tracker, batch)
    assert rows.shape == (2, 1024) and np.isfinite(rows).all()  # 2 windows of the 17-frame video
