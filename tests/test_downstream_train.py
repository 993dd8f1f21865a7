"""Classifier training and testing: metrics against torchmetrics, the schedule, learning on OphSim phases,
exact kill-and-resume, and clips that fail while training."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from downstream import metrics
from downstream.ophnet import ClipSource, load_clips, scan_clips
from downstream.train import TrainingStopped, batch_rows, load_recipe, lr_at, total_steps, train_classifier
from ophora.configs import ConfigError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------------------------------------------------
# Metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_and_macro_equal_torchmetrics(seed):
    from torchmetrics.classification import MulticlassAccuracy

    g = torch.Generator().manual_seed(seed)
    classes, n = 17, 600
    scores = torch.randn(n, classes, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    scores[labels[:200], :] += 0  # keep ties impossible; make some clips easy below
    scores[torch.arange(150), labels[:150]] += 2.0
    s, y = scores.numpy(), labels.numpy()
    for k in (1, 5):
        ref = MulticlassAccuracy(num_classes=classes, top_k=k, average="micro")(scores, labels).item()
        assert metrics.topk_accuracy(s, y, k) == pytest.approx(ref, abs=1e-6)
    for k in (1, 5):
        ref = MulticlassAccuracy(num_classes=classes, top_k=k, average="macro")(scores, labels).item()
        assert metrics.macro_accuracy(s, y, classes, k) == pytest.approx(ref, abs=1e-6)
    per_class = MulticlassAccuracy(num_classes=classes, average=None)(scores, labels).numpy()
    np.testing.assert_allclose(metrics.per_class_accuracy(s, y, classes), per_class, atol=1e-6)


def test_per_class_and_confusion_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    labels = np.array([0, 1, 1, 0])
    assert metrics.topk_accuracy(scores, labels, 1) == 0.5
    assert metrics.topk_accuracy(scores, labels, 2) == 0.75
    assert metrics.topk_accuracy(scores, labels, 5) == 1.0  # k capped at the number of classes
    per_class = metrics.per_class_accuracy(scores, labels, 4)
    assert per_class[:2].tolist() == [0.5, 0.5] and np.isnan(per_class[2:]).all()
    assert metrics.macro_accuracy(scores, labels, 4) == 0.5  # classes without clips are left out
    assert metrics.confusion_matrix(scores, labels, 3).tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]


# ---------------------------------------------------------------------------------------------------------
# Recipes and schedule


def test_paper_recipes_follow_pyslowfast():
    slowfast, mvit = load_recipe("slowfast_8x8_r50"), load_recipe("mvitv2_s_16x4")
    assert (slowfast.frames, slowfast.stride, slowfast.alpha, slowfast.crop) == (32, 2, 4, 224)
    assert (slowfast.optimizer, slowfast.lr, slowfast.momentum, slowfast.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    sampling = slowfast.sampling()  # 10 temporal views x 3 crops of 256 from a short side of 256
    assert (sampling.views, sampling.spatial_crops, sampling.test_crop, sampling.test_short_side) == (10, 3, 256, 256)
    assert sampling.test_views == 30
    assert (mvit.frames, mvit.stride, mvit.crop, mvit.test_views) == (16, 4, 224, 5)
    assert (mvit.sampling().test_views, mvit.sampling().test_crop, mvit.sampling().test_short_side) == (5, 224, 256)
    assert (mvit.optimizer, mvit.lr, mvit.weight_decay, mvit.label_smoothing) == ("adamw", 1e-4, 0.05, 0.1)
    assert (mvit.mixup_alpha, mvit.cutmix_alpha, mvit.randaugment) == (0.8, 1.0, "rand-m7-n4-mstd0.5-inc1")
    # issue 17: the rest of PySlowFast's MViTv2-S recipe (MVITv2_S_16x4.yaml) and SlowFast's (SLOWFAST_8x8_R50.yaml)
    assert (mvit.batch_size, mvit.num_sample, mvit.erase_prob, mvit.rrc_scale) == (16, 2, 0.25, (0.08, 1.0))
    assert mvit.rrc_ratio == (0.75, 1.3333) and mvit.cosine_after_warmup and mvit.target_fps == 30
    assert (slowfast.jitter, slowfast.bn_weight_decay, slowfast.precise_bn_batches) == ((256, 320), 0.0, 200)
    assert slowfast.target_fps == 30 and slowfast.sampling().window_seconds(60.0) == pytest.approx(64 / 30)
    with pytest.raises(ConfigError, match=r"mvitv2_s_16x4\.yaml: learning_rate: unknown key"):
        load_recipe("mvitv2_s_16x4", {"learning_rate": 1.0})
    with pytest.raises(ConfigError, match=r"unknown recipe 'slowfast_8x8'; expected one of \[.*'slowfast_tiny'\].*"
                                          r"did you mean 'slowfast_8x8_r50'"):
        load_recipe("slowfast_8x8")


def test_cosine_schedule_with_warmup():
    recipe = load_recipe("slowfast_8x8_r50", {"epochs": 10, "warmup_epochs": 2, "warmup_start_factor": 0.1})
    steps = 100
    assert lr_at(recipe, 0, steps) == pytest.approx(0.01)
    peak = 0.1 * (1 + math.cos(math.pi * 20 / 100)) / 2
    assert lr_at(recipe, 20, steps) == pytest.approx(peak)
    assert lr_at(recipe, 10, steps) == pytest.approx((0.01 + peak) / 2)
    assert lr_at(recipe, 100, steps) == pytest.approx(0.0, abs=1e-12)
    assert total_steps(recipe, 130) == 10 * (130 // 64)


def test_batches_are_a_function_of_seed_and_step():
    epoch, rows = batch_rows(0, 5, clips=20, batch=8)
    assert epoch == 2 and len(rows) == 8 and rows == batch_rows(0, 5, 20, 8)[1]
    first_epoch = batch_rows(0, 0, 20, 8)[1] + batch_rows(0, 1, 20, 8)[1]
    assert len(set(first_epoch)) == 16  # no clip twice within an epoch


# ---------------------------------------------------------------------------------------------------------
# Training on OphSim


def _split(df, name):
    return df[df["split"].astype(str) == name]


@pytest.fixture(scope="module")
def phases(tmp_path_factory):
    """Phase clips of a 12-patient OphSim world (8 train / 2 val / 2 test patients), 64x64, 16 frames each."""
    from ophora.sim.world import WorldConfig, build_world

    out = tmp_path_factory.mktemp("ophsim_train")
    build_world(WorldConfig(videos=12, seed=0, frames=16, size=(64, 64)), out, progress=False)
    clips = load_clips(ClipSource(out / "ophnet" / "OphSim_loca_phase.csv", "phase",
                                  segments_root=out / "ophnet" / "segments"))
    readable, problems = scan_clips(clips)
    assert problems.empty
    return readable


@pytest.mark.slow
def test_tiny_slowfast_learns_ophsim_phases(phases, tmp_path):
    recipe = load_recipe("slowfast_tiny", {"epochs": 10})
    results = train_classifier(recipe, _split(phases, "train"), {"val": _split(phases, "val"),
                                                                 "test": _split(phases, "test")}, 12, tmp_path / "run")
    val, test = results["splits"]["val"], results["splits"]["test"]
    chance = 1 / 12
    assert test["clips"] == len(_split(phases, "test")) == 24 and test["failed"] == 0
    # measured here: top-1 33.3% (val) and 25.0% (test), top-5 70.8% and 83.3%; chance 8.3% and 41.7%
    assert (val["top1"] + test["top1"]) / 2 >= 2.5 * chance, (val, test)
    assert min(val["top5"], test["top5"]) >= 1.5 * 5 * chance, (val, test)
    assert (tmp_path / "run" / "eval" / "confusion_test.png").stat().st_size > 1000
    saved = np.load(tmp_path / "run" / "eval" / "test.npz")
    assert saved["scores"].shape == (len(_split(phases, "test")), 12)
    assert metrics.topk_accuracy(saved["scores"], saved["labels"], 1) == pytest.approx(test["top1"])
    assert json.loads((tmp_path / "run" / "results.json").read_text())["splits"]["test"]["top1"] == test["top1"]


def test_killed_and_resumed_training_equals_uninterrupted(phases, tmp_path):
    from safetensors.torch import load_file

    recipe = load_recipe("mvitv2_tiny", {"max_steps": 6, "checkpoint_every": 2, "batch_size": 4, "crop": 32,
                                         "short_side": 32, "frames": 4, "mixup_alpha": 0.8, "cutmix_alpha": 1.0,
                                         "randaugment": "rand-m7-n2-mstd0.5-inc1", "rrc_scale": [0.08, 1.0],
                                         "erase_prob": 0.25, "num_sample": 2})
    train, evals = _split(phases, "train").iloc[:24], {"val": _split(phases, "val").iloc[:6]}
    whole = train_classifier(recipe, train, evals, 12, tmp_path / "whole", seed=3)
    with pytest.raises(TrainingStopped):
        train_classifier(recipe, train, evals, 12, tmp_path / "killed", seed=3, stop_after=3)
    assert not (tmp_path / "killed" / "results.json").exists()
    resumed = train_classifier(recipe, train, evals, 12, tmp_path / "killed", seed=3)
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["splits"]["val"]["top1"] == whole["splits"]["val"]["top1"]
    log = (tmp_path / "killed" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == [str(s) for s in range(1, 7)]  # step 3 written once


def test_clips_failing_during_training_are_counted_and_listed(phases, tmp_path):
    train = _split(phases, "train").iloc[:8].copy()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")
    train.loc[train.index[2], "clip_path"] = str(broken)
    recipe = load_recipe("slowfast_tiny", {"max_steps": 2, "batch_size": 8, "crop": 32, "short_side": 32})
    results = train_classifier(recipe, train, {"val": _split(phases, "val").iloc[:4]}, 12, tmp_path / "run")
    failed = results["train_failed"]
    assert len(failed) == 2 and {f["clip_path"] for f in failed} == {str(broken)}  # once per step
    assert "empty" in failed[0]["reason"] and failed[0]["row"] == int(train.index[2])
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [line.split(",")[-1] for line in log[1:]] == ["1", "1"]
