"""The metric registry: names, did-you-mean, what tables ask the metric objects, and a metric registered in a
test (one protocol, one class) that ``python -m benchmarks.evaluate`` scores without any other file edited."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from benchmarks import metrics
from benchmarks.detectors import DetectorInfo
from benchmarks.evaluate import main
from benchmarks.metrics.base import Metric
from benchmarks.metrics.stats import FeatureStats
from ophora.data.sets import load_video_set
from ophora.data.video import Uniform, read_video

from eval_sets import make_folder, make_generated


def test_names_directions_and_display_names():
    assert metrics.names() == ("fid", "fvd", "clipscore", "kid", "recall", "fvmd", "kvd", "jedi", "kvmd")
    shown = {name: (metrics.get(name).display_name, metrics.get(name).higher_is_better) for name in metrics.names()}
    assert shown == {"fid": ("FID", False), "fvd": ("FVD", False), "clipscore": ("CLIPScore", True),
                     "kid": ("KID", False), "recall": ("R@1", True), "fvmd": ("FVMD", False),
                     "kvd": ("KVD", False), "jedi": ("JEDi", False),
                     "kvmd": ("KVMD", False)}
    assert metrics.get("kid").features_from == "fid" and not metrics.get("clipscore").needs_real
    with pytest.raises(KeyError, match="unknown metric 'fvdd'. Did you mean 'fvd'"):
        metrics.get("fvdd")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(type("OtherFID", (metrics.FID,), {}))


@dataclass(frozen=True)
class BrightnessProtocol:
    name: str = "brightness/mean"
    version: str = "1"
    metric: str = "brightness"
    frames_per_video: int = 2

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        return Uniform(self.frames_per_video).indices(num_frames, 1.0)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).float()


class Brightness(Metric):
    """Mean pixel value of the generated frames (a toy: fake set only, statistics summed across processes)."""

    name = "brightness"
    display_name = "Brightness"
    higher_is_better = True
    protocols = (BrightnessProtocol(),)
    result_fields = ("value", "n_fake")
    needs_real = False

    def load_detector(self, weights, cfg):
        return torch.nn.Identity(), DetectorInfo("identity", "identity", "0" * 64, False, self.protocol.name)

    def new_state(self, **_):
        return FeatureStats(1)

    def update(self, state, detector, positions, batch):
        state.update(detector(batch).double().flatten(1).mean(1, keepdim=True))  # [B, 1]: each video's mean

    def compute(self, real, fake, *, n_boot=0, seed=0):
        return {"value": float(fake.mean()[0]), "n_fake": fake.count}


@pytest.fixture
def brightness(monkeypatch):
    monkeypatch.setattr(metrics, "_REGISTRY", dict(metrics._REGISTRY))  # the registration ends with the test
    return metrics.register(Brightness)


def test_a_registered_metric_is_scored_by_the_harness(tmp_path, brightness, capsys):
    make_folder(tmp_path / "real", 2, 8)
    make_generated(tmp_path / "fake", 3, 8)
    out = tmp_path / "result.json"
    assert main(["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", "brightness",
                 "--workers", "0", "--quiet", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "brightness" in capsys.readouterr().out
    expected = np.mean([read_video(item.path, Uniform(2)).astype(np.float64).mean()
                        for item in load_video_set(tmp_path / "fake").items])
    metric = result["metrics"]["brightness"]
    assert metric["value"] == pytest.approx(expected, rel=1e-12) and metric["n_fake"] == 3
    assert metric["protocol"] == {"name": "brightness/mean", "version": "1", "metric": "brightness",
                                  "frames_per_video": 2} and "protocols" not in result  # written once
    assert "reference_cache" not in metric and metric["detector"]["identifier"] == "identity"


def test_undeclared_result_fields_are_refused(tmp_path, brightness, monkeypatch):
    make_folder(tmp_path / "real", 1, 8)
    make_generated(tmp_path / "fake", 2, 8)
    monkeypatch.setattr(Brightness, "result_fields", ("value",))
    with pytest.raises(RuntimeError, match=r"\['n_fake'\] missing from its result_fields"):
        main(["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", "brightness",
              "--workers", "0", "--quiet", "--out", str(tmp_path / "r.json")])
