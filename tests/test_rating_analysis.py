"""The rating study's analysis: ICC and alpha against published examples, and the whole analysis on synthetic
ratings whose agreement and set means are known."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.rating.analysis import analyse_frame, icc2, ordinal_alpha, two_way_bootstrap

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(2,1) = 0.29, ICC(2,4) = 0.62.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing values;
# alpha (ordinal) = 0.815.
N = np.nan
KRIPPENDORFF = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
                         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
                         [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
                         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]])


def test_icc_2_1_and_2_k_match_shrout_and_fleiss():
    single, average = icc2(SHROUT_FLEISS)
    assert single == pytest.approx(0.2898, abs=5e-4)
    assert average == pytest.approx(0.6201, abs=5e-4)


def test_icc_is_one_for_identical_judges_and_nan_when_undefined():
    scores = np.array([[1, 1, 1], [3, 3, 3], [5, 5, 5], [2, 2, 2]])
    assert icc2(scores) == (pytest.approx(1.0), pytest.approx(1.0))
    assert np.isnan(icc2(np.array([[1, 2]]))[0])  # one target


def test_ordinal_alpha_matches_krippendorffs_worked_example():
    assert ordinal_alpha(KRIPPENDORFF, (1, 2, 3, 4, 5)) == pytest.approx(0.815, abs=1e-3)


def test_two_way_bootstrap_mean_is_the_cell_mean_and_the_interval_brackets_it():
    rng = np.random.default_rng(0)
    matrix = rng.integers(1, 6, size=(5, 30)).astype(float)
    matrix[0, :10] = np.nan
    mean, low, high = two_way_bootstrap(matrix, 500, seed=1)
    assert mean == pytest.approx(np.nanmean(matrix))
    assert low < mean < high
    assert high - low < 1.0
    assert two_way_bootstrap(matrix, 500, seed=1) == (mean, low, high)  # seeded


def synthetic_ratings(noise: float, raters: int = 6, videos: int = 20, seed: int = 0,
                      careless: bool = False) -> pd.DataFrame:
    """Two sets with true means 2 and 4 (each video has its own true score); each rater adds a bias of
    +-0.2 and Gaussian noise of ``noise``, rounded and clipped to 1-5. ``careless``: rater r5 rates the
    real set 1."""
    rng = np.random.default_rng(seed)
    rows = []
    truth = {"weak": 2.0, "strong": 4.0, "real": 4.5}
    for set_name, centre in truth.items():
        quality = centre + rng.normal(0, 0.6, videos)
        for r in range(raters):
            bias = rng.uniform(-0.2, 0.2)
            for v in range(videos):
                for criterion in ("realism", "fidelity"):
                    score = int(np.clip(np.rint(quality[v] + bias + rng.normal(0, noise)), 1, 5))
                    if careless and set_name == "real" and r == 5:
                        score = 1
                    rows.append({"rater": f"r{r}", "set": set_name, "role": "real" if set_name == "real" else
                                 "generated", "video": f"{set_name}/{v}", "phase": f"p{v % 2}", "prompt": "",
                                 "position": 0, "check": "", "repeat_of": None, "criterion": criterion,
                                 "score": score})
    frame = pd.DataFrame(rows)
    frame["position"] = frame.groupby("rater").cumcount() // 2
    return frame


@pytest.mark.slow
def test_agreement_is_high_for_consistent_raters_and_near_zero_for_noise(tmp_path):
    config = {"scale": [1, 5], "criteria": [{"key": "realism", "label": "Realism"},
                                            {"key": "fidelity", "label": "Fidelity"}],
              "checks": {"repeat_tolerance": 1.0, "real_floor": 2.5}}
    out = analyse_frame(synthetic_ratings(noise=0.3), tmp_path / "good", config, n_boot=300)
    good = pd.read_csv(out / "agreement.csv").set_index("criterion")
    assert (good["alpha_ordinal"] > 0.75).all() and (good["icc2_1"] > 0.75).all()
    summary = pd.read_csv(out / "summary.csv")
    weak = summary[(summary["set"] == "weak") & (summary["criterion"] == "realism")].iloc[0]
    strong = summary[(summary["set"] == "strong") & (summary["criterion"] == "realism")].iloc[0]
    assert weak["low"] < 2.0 + 0.25 and weak["high"] > 2.0 - 0.25  # the interval is near the truth
    assert strong["mean"] == pytest.approx(4.0, abs=0.35) and weak["high"] < strong["low"]
    assert (summary["videos"] == 20).all() and (summary["raters"] == 6).all()

    rng = np.random.default_rng(3)
    noise = synthetic_ratings(noise=0.3)
    noise["score"] = rng.integers(1, 6, len(noise))
    agree = pd.read_csv(analyse_frame(noise, tmp_path / "noise", config, n_boot=100) / "agreement.csv")
    assert (agree["alpha_ordinal"].abs() < 0.1).all() and (agree["icc2_1"].abs() < 0.1).all()


@pytest.mark.slow
def test_outputs_name_the_rater_who_fails_the_real_clip_calibration(tmp_path):
    config = {"scale": [1, 5], "checks": {"repeat_tolerance": 1.0, "real_floor": 2.5}}
    frame = synthetic_ratings(noise=0.3, careless=True)
    repeat = frame[(frame["rater"] == "r0") & (frame["position"] == 0)].copy()
    repeat["check"], repeat["repeat_of"], repeat["position"] = "repeat", 0, 999
    repeat["score"] = np.where(repeat["score"] > 3, 1, 5)  # the second showing disagrees by >= 2 per criterion
    out = analyse_frame(pd.concat([frame, repeat]), tmp_path, config, n_boot=100)
    checks = pd.read_csv(out / "checks.csv")
    failed = checks[~checks["passed"]]
    assert sorted(zip(failed["rater"], failed["check"])) == [("r0", "repeat"), ("r5", "real clips")]
    assert len(checks) == 7  # one repeat, six calibrations
    table = (out / "table.md").read_text()
    assert "attention checks: 5 of 7 passed" in table and "r5 (real clips" in table
    document = json.loads((out / "analysis.json").read_text())
    assert document["raters"] == 6 and document["provenance"] and len(document["summary"]) == 6
    for figure in ("fig3a.png", "fig3b.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the repeat is left out of the means: the weak set's mean is unchanged by it
    plain = analyse_frame(frame, tmp_path / "plain", config, n_boot=100)
    assert pd.read_csv(plain / "summary.csv")["mean"].tolist() == pd.read_csv(out / "summary.csv")["mean"].tolist()
