"""FID end to end (video files -> number) equals pytorch-fid's own pipeline on the same frames and weights.

pytorch-fid's side is run as its ``get_activations`` does (float [0, 1] NCHW batches into its InceptionV3,
which resizes and normalises; ``pred[0].squeeze(3).squeeze(2)``), then ``np.mean`` / ``np.cov`` and its
``calculate_frechet_distance`` (scipy sqrtm, about 10-20 s at d = 2048 on 2 cores). Both sides get the same
random-init FID weights (seed 0) and the same decoded frames (2 uniformly spaced frames per video).
"""
from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from pytorch_fid import inception as pfi
from pytorch_fid.fid_score import calculate_frechet_distance

from benchmarks.detectors import seeded_state_dict
from benchmarks.detectors.inception import fid_template_state_dict
from benchmarks.evaluate import EvalConfig, evaluate
from ophora.data.video import Uniform, read_video

from eval_sets import make_folder, make_generated


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def _pytorch_fid_model() -> pfi.InceptionV3:
    state = seeded_state_dict(fid_template_state_dict(), 0)
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: state):
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def _activations(paths, model) -> np.ndarray:
    batches = []
    for path in paths:
        frames = read_video(path, select=Uniform(2))
        batch = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0  # ToTensor: [0, 1] NCHW
        with torch.no_grad():
            pred = model(batch)[0]
        batches.append(pred.squeeze(3).squeeze(2).cpu().numpy())
    return np.concatenate(batches)


@pytest.mark.slow
def test_fid_equals_pytorch_fid_on_the_same_frames(tmp_path):
    real = make_folder(tmp_path / "real", 5, 12, size=(40, 48), seed=0)
    fake = make_generated(tmp_path / "fake", 5, 12, size=(40, 48), seed=1, tint=40.0)
    cfg = EvalConfig(str(tmp_path / "real"), str(tmp_path / "fake"), metrics=("fid",), fid_frames=2,
                     bootstrap=0, workers=1, progress=False, out=str(tmp_path / "fid.json"))
    ours = evaluate(cfg)["metrics"]["fid"]

    model = _pytorch_fid_model()
    act_real, act_fake = _activations(real, model), _activations(fake, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecated sqrtm(disp=...) inside pytorch-fid
        expected = calculate_frechet_distance(act_real.mean(0), np.cov(act_real, rowvar=False),
                                              act_fake.mean(0), np.cov(act_fake, rowvar=False))
    assert expected > 1e-3
    assert ours["value"] == pytest.approx(expected, rel=1e-4)
    assert (ours["n_real"], ours["n_fake"], ours["n_real_rows"], ours["n_fake_rows"]) == (5, 5, 10, 10)
    assert ours["protocol"]["name"] == "fid/pytorch-fid" and ours["protocol"]["divisor"] == "N-1"
    assert ours["detector"]["identifier"] == "random-init:fid-inception-v3:seed=0"
