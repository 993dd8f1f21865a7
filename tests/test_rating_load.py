"""The rating server under load on loopback: 50 simulated raters post at once for a bounded time; every rating
the server acknowledged is in the database, and the p95 response time is reported."""
from __future__ import annotations

import pytest

from benchmarks.rating.load import run_load

pytestmark = pytest.mark.slow


def test_fifty_concurrent_raters_lose_no_rating(tmp_path):
    report = run_load(tmp_path, raters=50, seconds=15)
    print(f"rating load: {report}")
    assert report["acknowledged"] > 50  # every rater got through at least once, and more
    assert report["stored"] == report["acknowledged"] and report["lost"] == 0
    assert report["errors"] == 0
    assert report["post"]["p95_ms"] < 10_000
