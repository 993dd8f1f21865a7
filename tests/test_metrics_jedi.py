"""JEDi (``jedi/v-jepa2``): the value is JEDi's released formula on the detector's features, the V-JEPA 2 detector
loads a local transformers checkpoint without any download, and the metric runs through ``benchmarks.evaluate``.

JEDi's formula (``videojedi/JEDi.py`` ``compute_metric``, ``videojedi/mmd_polynomial.py`` ``mmd_poly`` with
scikit-learn's ``polynomial_kernel``) is written out as in tests/test_metrics_kvd.py.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks.detectors import CustomWeights
from benchmarks.detectors.vjepa import TINY, VJEPA2Features, load_vjepa2
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics import build, get_protocol
from benchmarks.metrics.jedi import JEDi

from eval_sets import clip_frames, make_folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def jedi_compute_metric(train, test):
    k = lambda x, y: (x @ y.T / x.shape[1]) ** 2  # noqa: E731 - polynomial_kernel(degree=2, gamma=None, coef0=0)
    return (k(train, train).mean() + k(test, test).mean() - 2 * k(train, test).mean()) * 100


def test_prepare_crops_256_and_normalises_like_jedi():
    x = get_protocol("jedi/v-jepa2").prepare(clip_frames(16, (48, 64), seed=0))
    assert tuple(x.shape) == (16, 3, 256, 256)
    grey = get_protocol("jedi/v-jepa2").prepare(np.full((16, 40, 40, 3), 124, np.uint8))
    expected = (124 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(grey[0, :, 100, 100], expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_value_is_jedis_formula_on_the_detector_features(tmp_path):
    metric = build("jedi", EvalConfig(real="", fake="", tiny_i3d=True))
    assert metric.protocol.model == "tiny"
    detector, info = metric.load_detector("random-init", EvalConfig(real="", fake="", tiny_i3d=True))
    assert info.identifier == "random-init:vjepa2-tiny:seed=0" and detector.dim == 64
    clips = [metric.protocol.prepare(clip_frames(16, (32, 32), seed=s, tint=40.0 * (s % 2))) for s in range(6)]
    states = [metric.new_state(detector=detector, rows_path=tmp_path / f"{name}.f16") for name in ("real", "fake")]
    metric.update(states[0], detector, [0, 1, 2], torch.stack(clips[:3]))
    metric.update(states[1], detector, [0, 1, 2], torch.stack(clips[3:]))
    real, fake = (np.asarray(s.row_arrays()[0], np.float64) for s in states)
    result = metric.compute(*states, n_boot=20, seed=1)
    assert result["value"] == pytest.approx(jedi_compute_metric(real, fake), rel=1e-9) and result["value"] > 0
    assert result["n_real"] == result["n_fake"] == 3 and result["ci"]["n_boot"] == 20


@pytest.mark.slow
def test_loads_a_local_transformers_checkpoint_without_downloading(tmp_path):
    source = VJEPA2Features.build(TINY).eval()
    source.model.save_pretrained(tmp_path / "vjepa2-tiny")
    model, info = load_vjepa2(CustomWeights(tmp_path / "vjepa2-tiny" / "model.safetensors"), 0, False, "jedi/v-jepa2")
    assert info.identifier == "custom:model.safetensors" and not info.comparable
    x = torch.randn(1, 16, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), source(x))
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vjepa2(CustomWeights(tmp_path / "loose" / "model.safetensors"), 0, False, "jedi/v-jepa2")
    with pytest.raises(FileNotFoundError, match="--detector jedi="):
        load_vjepa2("pretrained", 0, False, "jedi/v-jepa2")


@pytest.mark.slow
def test_evaluate_scores_jedi_with_the_tiny_detector_and_caches_the_reference(tmp_path):
    make_folder(tmp_path / "real", 4, 18, size=(32, 32), seed=0)
    make_folder(tmp_path / "fake", 4, 16, size=(32, 32), seed=1, tint=50.0)
    runs = []
    for i in range(2):
        out = tmp_path / f"eval{i}.json"
        evaluate(EvalConfig(real=str(tmp_path / "real"), fake=str(tmp_path / "fake"), metrics=("jedi",),
                            tiny_i3d=True, bootstrap=10, workers=0, out=str(out), progress=False))
        runs.append(json.loads(out.read_text())["metrics"]["jedi"])
    first, second = runs
    assert first["protocol"]["name"] == "jedi/v-jepa2" and first["protocol"]["model"] == "tiny"
    assert math.isfinite(first["value"]) and first["n_real"] == first["n_fake"] == 4
    assert second["reference_cache"]["hit"] is True and second["value"] == pytest.approx(first["value"], rel=1e-6)
    assert isinstance(JEDi().protocol.dim, int)
