"""The console says what the result file knows (issue 16, item 7): warnings, intervals of a distance reaching
below zero, a clamped CLIPScore and the random-init banner with the fetch command."""
from __future__ import annotations

from benchmarks.detectors.clip import TINY_MODEL
from benchmarks.evaluate import EvalConfig, evaluate, summary_table

from eval_sets import make_folder, make_generated


def test_a_real_run_prints_its_warnings_and_the_random_init_banner(tmp_path):
    make_folder(tmp_path / "real", 4, 16)
    make_generated(tmp_path / "fake", 4)
    result = evaluate(EvalConfig(str(tmp_path / "real"), str(tmp_path / "fake"), metrics=("fid", "clipscore"),
                                 clip_model=TINY_MODEL, clip_frames=2, fid_frames=2, bootstrap=20, workers=0,
                                 progress=False, no_cache=True))
    text = summary_table(result)
    fid = result["metrics"]["fid"]
    assert fid["warnings"] and all(f"note: fid: {w}" in text for w in fid["warnings"])  # 8 rows, 2048 dimensions
    assert "note: RANDOM-INIT detectors (" in text and "python -m ophora.weights fetch NAME" in text
    clip = result["metrics"]["clipscore"]
    if clip["mean_unclamped"] < clip["value"]:
        assert f"the mean over videos is {clip['mean_unclamped']:.4f}, clamped at 0" in text


def _payload(low: float, unclamped: float) -> dict:
    surgical = {"comparable_with_literature": False, "identifier": "ophsim-surgical:video:x", "detector": "fvd"}
    return {"failed": [], "detectors": {"fvd": surgical, "clipscore": surgical},
            "metrics": {"fvd": {"value": 0.4, "ci": {"low": low, "high": 1.2}, "n_real": 8, "n_fake": 8,
                                "warnings": [], "detector": surgical, "protocol": {"name": "fvd/ophsim-surgical"}},
                        "clipscore": {"value": max(unclamped, 0.0), "mean_unclamped": unclamped,
                                      "ci": {"low": 0.0, "high": 1.0}, "n_fake": 8, "detector": surgical,
                                      "protocol": {"name": "clipscore/ophsim-surgical"}}}}


def test_a_distance_interval_below_zero_is_printed_clipped_with_a_note():
    text = summary_table(_payload(low=-0.35, unclamped=-2.38))
    assert "[0.0000, 1.2000]" in text and "lower end -0.3500 lies below zero" in text
    assert "the mean over videos is -2.3800, clamped at 0" in text
    assert "RANDOM-INIT" not in text  # the surgical detectors are trained, not random
    clean = summary_table(_payload(low=0.1, unclamped=3.0))
    assert "note:" not in clean and "[0.1000, 1.2000]" in clean
