"""End-to-end invariants: a set against itself gives Fréchet distances ~0 (same frames selected on both
sides; KID's unbiased estimator is not 0 there, it is about -1/m), and every metric is invariant to the order
in which the videos are listed."""
from __future__ import annotations

import pytest

from benchmarks.detectors.clip import TINY_MODEL
from benchmarks.evaluate import EvalConfig, evaluate
from ophora.data.manifests import InstructionClip, write_instruction_set

from eval_sets import PROMPTS, make_folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def test_a_set_against_itself_is_at_distance_zero(tmp_path):
    make_folder(tmp_path / "videos", 6, 16, seed=3)  # 16 frames: the real clip's offset is 0, as the fake's
    cfg = EvalConfig(str(tmp_path / "videos"), str(tmp_path / "videos"), metrics=("fid", "fvd"),
                     fid_frames=1, tiny_i3d=True, bootstrap=0, workers=0, progress=False, no_cache=True)
    metrics = evaluate(cfg)["metrics"]
    for name in ("fid", "fvd"):
        scale = metrics[name]["n_real_rows"]  # distances between different sets here are O(1) to O(100)
        assert abs(metrics[name]["value"]) < 1e-6 * scale, name


def _instruction_csv(root, name, order):
    clips = [InstructionClip(f"c{i}", PROMPTS[i % len(PROMPTS)], root / "clips" / f"c{i}.mp4") for i in order]
    return write_instruction_set(root / name, clips)


@pytest.mark.slow
def test_metrics_do_not_depend_on_the_order_of_videos(tmp_path):
    for name, seed, tint in (("real", 0, 0.0), ("fake", 1, 50.0)):
        for i, path in enumerate(make_folder(tmp_path / name / "tmp", 6, 18, seed=seed, tint=tint)):
            (tmp_path / name / "clips").mkdir(parents=True, exist_ok=True)
            path.rename(tmp_path / name / "clips" / f"c{i}.mp4")
    order, shuffled = list(range(6)), [4, 1, 5, 0, 3, 2]
    results = []
    for real_order, fake_order in ((order, order), (shuffled, order[::-1])):
        real = _instruction_csv(tmp_path / "real", f"real-{real_order[0]}.csv", real_order)
        fake = _instruction_csv(tmp_path / "fake", f"fake-{fake_order[0]}.csv", fake_order)
        cfg = EvalConfig(str(real), str(fake), metrics=("fid", "fvd", "clipscore", "kid"), fid_frames=1,
                         tiny_i3d=True, clip_model=TINY_MODEL, clip_frames=2, bootstrap=0, workers=0,
                         progress=False, no_cache=True, seed=5)
        results.append(evaluate(cfg))
    first, second = (r["metrics"] for r in results)
    # CLIP embeddings are float32 matmuls whose last bits depend on which videos share a batch: 1e-6.
    for name, rel in (("fid", 1e-9), ("fvd", 1e-9), ("kid", 1e-9), ("clipscore", 1e-6)):
        assert second[name]["value"] == pytest.approx(first[name]["value"], rel=rel), name
        assert second[name]["value"] != 0
    # A per-video score is 100 x the cosine of two float32 unit vectors: batch-dependent rounding of about 1e-7
    # per embedding component moves it by up to ~1e-5 in score units (seen: 2.1e-6), whatever its size.
    by_path = [{v["path"]: v["score"] for v in r["per_video"]["clipscore"]} for r in results]
    assert by_path[0] == pytest.approx(by_path[1], rel=1e-6, abs=1e-4)
