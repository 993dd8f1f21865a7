"""CLIPScore end to end equals 100 * cos computed by hand from open_clip embeddings (tiny config), with
truncation counted and the set's score clamped after averaging."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.detectors.clip import TINY_MODEL, load_clip
from benchmarks.evaluate import EvalConfig, evaluate
from ophora.data.video import Uniform, read_video

from eval_sets import make_folder, make_generated

LONG_PROMPT = "the surgeon slowly rotates the nucleus with a chopper while the assistant irrigates " * 6


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def _by_hand(clip, path, prompt: str, k: int) -> float:
    """mean over k uniform frames of 100 * cos(image, text), straight from the open_clip model."""
    frames = read_video(path, select=Uniform(k))
    with torch.no_grad():
        pixels = torch.stack([clip.preprocess(Image.fromarray(f)) for f in frames])
        image = clip.model.encode_image(pixels)
        text = clip.model.encode_text(clip.tokenizer([prompt]))
        cos = F.cosine_similarity(image, text.expand_as(image), dim=-1)
    return float((100 * cos).double().mean())


def test_clipscore_equals_hand_computed_open_clip(tmp_path):
    prompts = ("phacoemulsification of the nucleus", LONG_PROMPT, "an intraocular lens unfolds in the bag")
    paths = make_generated(tmp_path / "fake", 5, 14, seed=1, prompts=prompts)
    cfg = EvalConfig(str(tmp_path / "fake"), str(tmp_path / "fake"), metrics=("clipscore",), clip_frames=3,
                     clip_model=TINY_MODEL, detector_seed=2, bootstrap=50, workers=0, progress=False)
    result = evaluate(cfg)
    metric, per_video = result["metrics"]["clipscore"], result["per_video"]["clipscore"]
    clip = load_clip(TINY_MODEL, "random-init", seed=2)
    expected = [_by_hand(clip, p, prompts[i % 3], 3) for i, p in enumerate(paths)]
    np.testing.assert_allclose([v["score"] for v in per_video], expected, rtol=1e-5, atol=1e-4)
    assert [v["path"] for v in per_video] == [p.name for p in paths]
    assert metric["mean_unclamped"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert metric["value"] == pytest.approx(max(np.mean(expected), 0.0), abs=1e-4)
    assert metric["n_fake"] == 5 and metric["n_truncated"] == 2  # videos 1 and 4 carry the long prompt
    assert [v["truncated"] for v in per_video] == [False, True, False, False, True]
    assert per_video[1]["tokens"] > metric["context_length"] == 77
    assert metric["ci"]["low"] <= metric["value"] <= metric["ci"]["high"] or metric["value"] == 0.0
    assert metric["protocol"]["model"] == TINY_MODEL and metric["protocol"]["frames_per_video"] == 3


def test_clipscore_needs_prompts(tmp_path):
    make_folder(tmp_path / "plain", 2, 8)
    cfg = EvalConfig(str(tmp_path / "plain"), str(tmp_path / "plain"), metrics=("clipscore",),
                     clip_model=TINY_MODEL, workers=0, progress=False)
    with pytest.raises(ValueError, match="clipscore needs a prompt per generated video"):
        evaluate(cfg)
