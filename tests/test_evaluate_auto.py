"""``python -m benchmarks.evaluate`` on two plain folders: ``--weights auto`` picks the published detectors where
their weights are present and the shipped surgical ones otherwise (saying which and why), CLIPScore is left out
with a note when there are no prompts, and the result writes each protocol and each detector's comparability
once."""
from __future__ import annotations

import json

import pytest

import benchmarks.evaluate as harness
from benchmarks.evaluate import EvalConfig, main, resolve_auto

from eval_sets import make_folder


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(tmp_path / "no-weights"))  # no published file on this machine


def _auto(**options) -> tuple[EvalConfig, dict]:
    return resolve_auto(EvalConfig("real", "fake", metrics=("fid", "fvd", "clipscore", "kid"), weights="auto",
                                   **options))


def test_auto_takes_the_surgical_detectors_when_no_published_weights_are_present():
    cfg, choices = _auto()
    assert dict(cfg.protocols) == {"fid": "fid/ophsim-surgical", "fvd": "fvd/ophsim-surgical",
                                   "clipscore": "clipscore/ophsim-surgical"}
    assert set(choices) == {"fid", "fvd", "clipscore"}  # KID follows FID's features
    assert choices["fvd"]["weights"] == "shipped"
    assert choices["fvd"]["why"].startswith("published weights 'stylegan-v-i3d' not on this machine "
                                            "(`python -m ophora.weights fetch stylegan-v-i3d` gets them)")


def test_auto_takes_published_weights_where_present(monkeypatch):
    monkeypatch.setattr(harness.weights_store, "resolve",
                        lambda name: "/w/i3d.pt" if name == "stylegan-v-i3d" else (_ for _ in ()).throw(
                            FileNotFoundError(name)))
    cfg, choices = _auto()
    assert choices["fvd"] == {"protocol": "fvd/stylegan-v", "weights": "pretrained",
                              "why": "published weights 'stylegan-v-i3d' found in the weights store"}
    assert dict(cfg.detector_weights)["fvd"] == "pretrained" and "fvd" not in dict(cfg.protocols)
    assert dict(cfg.protocols)["fid"] == "fid/ophsim-surgical"


def test_auto_keeps_what_the_user_named():
    cfg, choices = _auto(tiny_i3d=True, clip_model="ophora-tiny-clip", protocols=(("fid", "fid/pytorch-fid"),))
    assert dict(cfg.detector_weights) == {"fid": "random-init", "fvd": "random-init", "clipscore": "random-init"}
    assert dict(cfg.protocols) == {"fid": "fid/pytorch-fid"}
    assert "--tiny-i3d asks for this protocol's own detector" in choices["fvd"]["why"]
    assert "--clip-model ophora-tiny-clip" in choices["clipscore"]["why"]
    assert "fid/pytorch-fid was named" in choices["fid"]["why"]
    assert resolve_auto(EvalConfig("r", "f", weights="random-init")) == (EvalConfig("r", "f", weights="random-init"),
                                                                        {})


@pytest.mark.slow  # two detectors on 3 + 3 videos: about 8 s on 2 busy cores
def test_two_plain_folders_score_with_the_defaults(tmp_path, capsys):
    make_folder(tmp_path / "real", 3, 18, seed=0)
    make_folder(tmp_path / "fake", 3, 18, seed=1, tint=30)
    out = tmp_path / "r.json"
    code = main(["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--out", str(out), "--quiet",
                 "--workers", "0", "--bootstrap", "0"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(out.read_text())
    assert result["config"]["metrics"] == ["fid", "fvd"] and result["config"]["weights"] == "auto"
    assert "note: clipscore left out: the generated set" in printed and "has no prompts" in result["notes"][0]
    assert {m: c["protocol"] for m, c in result["detector_choice"].items()} == {"fid": "fid/ophsim-surgical",
                                                                                "fvd": "fvd/ophsim-surgical"}
    assert "note: fvd: --weights auto chose fvd/ophsim-surgical (shipped): published weights" in printed
    assert result["metrics"]["fvd"]["protocol"]["name"] == "fvd/ophsim-surgical" and "protocols" not in result
    for detector in result["detectors"].values():
        assert "comparable" not in detector and detector["comparable_with_literature"] is False
    assert result["geometry"]["name"] == "native" and result["n"]["fake"] == 3


def _state(features, tmp_path, name):
    from benchmarks.metrics.fd import FrechetState

    state = FrechetState(features.shape[1], "N-1", tmp_path / f"{name}.f16")
    return state.update(features)


def test_fd_infinity_removes_the_bias_in_n(tmp_path):
    """Generated sets of N = 400 from the real Gaussian (d = 8): FD at N is biased upward (of order d / N), and
    averaged over 10 sets the extrapolation to N = infinity is near 0; with the mean shifted by 1 in every
    dimension it is near d * 1^2 = 8."""
    import numpy as np

    from benchmarks.evaluate import fd_infinity

    rng = np.random.default_rng(0)
    real = _state(rng.normal(size=(20000, 8)), tmp_path, "real")
    for shift, expected in ((0.0, 0.0), (1.0, 8.0)):
        at_n, extrapolated = [], []
        for i in range(10):
            fake = _state(rng.normal(size=(400, 8)) + shift, tmp_path, f"fake-{shift}-{i}")
            out = fd_infinity(real, fake, "N-1", points=8, seed=i)
            assert out["sizes"][0] == 100 and out["sizes"][-1] == 400 and len(out["values"]) == 8
            at_n.append(out["values"][-1])
            extrapolated.append(out["value"])
        bias = np.mean(at_n) - expected
        assert bias > 0.03, bias  # FD at N = 400 is biased upward
        assert abs(np.mean(extrapolated) - expected) < 0.3 * bias, (np.mean(extrapolated), bias)
