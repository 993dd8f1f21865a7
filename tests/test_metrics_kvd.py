"""KVD: parity with JEDi's released formula and with KID's estimator on fixed clip features; the metric on the FVD
states through ``benchmarks.evaluate`` under the I3D and the surgical video protocols.

JEDi (``videojedi`` 0.0.1, ``videojedi/JEDi.py`` and ``videojedi/mmd_polynomial.py``): ``compute_metric`` returns
``mmd_poly(train, test, degree=2, coef0=0) * 100``, and ``mmd_poly`` is ``XX.mean() + YY.mean() - 2 XY.mean()`` of
scikit-learn's ``polynomial_kernel(X, Y, degree, gamma=None, coef0)``, i.e. ``(X Y^T / d + coef0)^degree``. The
package is not installed (it pulls the V-JEPA repository and scikit-learn); both functions are written out here.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.metrics import build, get_protocol
from benchmarks.metrics.fd import FrechetState
from benchmarks.metrics.kvd import KVD, biased_mmd2
from benchmarks.metrics.mmd import kid
from ophora.seeding import derive_seed

from eval_sets import make_folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


def sklearn_polynomial_kernel(x, y, degree, gamma=None, coef0=1):
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def jedi_compute_metric(train, test):
    """JEDiMetric.compute_metric: mmd_poly(train, test, degree=2, coef0=0) * 100."""
    xx = sklearn_polynomial_kernel(train, train, 2, None, 0)
    yy = sklearn_polynomial_kernel(test, test, 2, None, 0)
    xy = sklearn_polynomial_kernel(train, test, 2, None, 0)
    return (xx.mean() + yy.mean() - 2 * xy.mean()) * 100


def clip_features(n, d, seed, offset=0.0, scale=1.0):
    """float16-exact features [n, d] (the FVD states keep rows in float16)."""
    x = np.random.default_rng(seed).standard_normal((n, d)) * scale + offset
    return x.astype(np.float16).astype(np.float64)


_COUNTER = iter(range(10**6))


@pytest.fixture
def state(tmp_path):
    """A FVD state keeping its rows (one per video), as the harness builds it when KVD is asked for."""
    def build_state(features):
        return FrechetState(features.shape[1], "N", rows_path=tmp_path / f"rows-{next(_COUNTER)}.f16").update(features)
    return build_state


def test_biased_mmd_reproduces_jedis_documented_example():
    a = np.arange(1, 10).reshape(3, 3).astype(float)
    b = np.array([[7, 6, 5], [4, 3, 2], [1, 1, 8], [0, 2, 5]], float)
    assert biased_mmd2(a, b, degree=2, coef0=0) == pytest.approx(270.7222222, rel=1e-9)  # mmd_poly's "270.7"


def test_kvd_jedi_equals_jedis_formula_on_fixed_features(state):
    real, fake = clip_features(30, 400, seed=0), clip_features(25, 400, seed=1, offset=0.2, scale=1.3)
    metric = KVD(get_protocol("kvd/jedi"))
    result = metric.compute(state(real), state(fake), n_boot=50, seed=3)
    assert result["value"] == pytest.approx(jedi_compute_metric(real, fake), rel=1e-9)
    assert result["ci"]["low"] < result["value"] < result["ci"]["high"] and result["n_real"] == 30
    same = metric.compute(state(real), state(real))["value"]
    assert abs(same) < 1e-9  # the biased estimator of a set against itself is exactly 0


def test_kvd_default_is_kids_unbiased_estimator_on_clips(state):
    real, fake = clip_features(40, 64, seed=2), clip_features(36, 64, seed=3, offset=0.3)
    result = KVD().compute(state(real), state(fake), n_boot=30, seed=5)
    expected, std = kid(real, fake, subsets=100, subset_size=1000, seed=derive_seed(5, "kid"))  # m = 36
    assert result["subset_size"] == 36 and result["value"] == pytest.approx(expected, rel=1e-9)
    assert result["std"] == pytest.approx(std, rel=1e-9, abs=1e-12)
    m = 36
    x, y = real[:m], fake[:m]
    k = lambda a, b: (a @ b.T / 64 + 1) ** 3  # noqa: E731 - KID's kernel written out
    whole = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
             - 2 * k(x, y).mean())
    assert KVD().compute(state(x), state(y))["value"] == pytest.approx(whole, rel=1e-9)
    assert result["ci"]["low"] < result["value"] < result["ci"]["high"]


def test_kvd_grows_with_the_shift_between_sets(state):
    real = clip_features(32, 32, seed=4)
    values = [KVD().compute(state(real), state(clip_features(32, 32, seed=5, offset=o)))["value"]
              for o in (0.0, 0.3, 0.6, 1.2)]
    assert values == sorted(values) and values[0] < 0.05 * values[-1]


def test_build_and_protocol_fields():
    metric = build("kvd", EvalConfig(real="", fake=""))
    assert metric.source == "fvd" and metric.needs_rows(0) and metric.protocol.name == "kvd"
    jedi = get_protocol("kvd/jedi")
    assert (jedi.degree, jedi.coef0, jedi.estimator, jedi.scale) == (2, 0.0, "biased", 100.0)
    with pytest.raises(ValueError, match="estimator"):
        type(jedi)(estimator="v-statistic")


@pytest.mark.slow
@pytest.mark.parametrize("fvd_protocol", ["fvd/stylegan-v", "fvd/ophsim-surgical"])
def test_evaluate_scores_kvd_on_the_fvd_protocols_features(tmp_path, fvd_protocol):
    make_folder(tmp_path / "real", 5, 16, size=(32, 32), seed=0)
    make_folder(tmp_path / "fake", 5, 16, size=(32, 32), seed=1, tint=60.0)
    out = tmp_path / "eval.json"
    evaluate(EvalConfig(real=str(tmp_path / "real"), fake=str(tmp_path / "fake"), metrics=("kvd",),
                        protocols=(("fvd", fvd_protocol), ("kvd", "kvd/jedi")), tiny_i3d=True, bootstrap=10,
                        workers=0, out=str(out), progress=False))
    result = json.loads(out.read_text())
    kvd = result["metrics"]["kvd"]
    assert kvd["protocol"]["name"] == "kvd/jedi" and kvd["features_protocol"]["name"] == fvd_protocol
    assert math.isfinite(kvd["value"]) and kvd["value"] > 0 and kvd["n_real"] == kvd["n_fake"] == 5
    assert kvd["ci"]["n_boot"] == 10 and "fvd" not in result["metrics"]


def test_kvmd_is_kids_estimator_on_the_fvmd_rows_resampled_by_video(state, tmp_path):
    from benchmarks.metrics.kvd import KVMD

    metric = build("kvmd", EvalConfig(real="", fake=""))
    assert isinstance(metric, KVMD) and metric.source == "fvmd" and metric.protocol.name == "kvmd"
    real, fake = clip_features(20, 48, seed=6), clip_features(16, 48, seed=7, offset=0.4)
    states = []
    for name, rows in (("real", real), ("fake", fake)):
        s = FrechetState(48, "N-1", rows_path=tmp_path / f"{name}.f16")
        s.update(rows, np.repeat(np.arange(len(rows) // 2), 2))  # two windows per video
        states.append(s)
    result = metric.compute(*states, n_boot=20, seed=2)
    expected, _ = kid(real, fake, subsets=100, subset_size=1000, seed=derive_seed(2, "kid"))
    assert result["value"] == pytest.approx(expected, rel=1e-9)
    assert (result["n_real"], result["n_fake"], result["n_real_rows"]) == (10, 8, 20)
    assert result["ci"]["resampled"] == "videos (both sets)" and result["ci"]["low"] < result["value"]
