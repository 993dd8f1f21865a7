"""The rating server under load on loopback: 50 simulated raters post at once for 8 s; every rating
the server acknowledged is in the database, and the p95 response time is reported."""
from __future__ import annotations

import pytest

from benchmarks.rating.load import run_load

pytestmark = pytest.mark.slow


def test_fifty_concurrent_raters_lose_no_rating(tmp_path):
    report = run_load(tmp_path, raters=50, seconds=8)
    print(f"rating load: {report}")
    assert report["acknowledged"] >= 50  # as many posts as raters at least: the 50 clients really overlapped
    assert report["stored"] == report["acknowledged"] and report["lost"] == 0
    assert report["errors"] == 0
    assert report["post"]["p95_ms"] < 10_000


def test_a_killed_server_keeps_every_acknowledged_rating(tmp_path):
    import re
    import signal
    import subprocess
    import sys

    import httpx
    from sqlalchemy import func, select

    from benchmarks.rating import db
    from benchmarks.rating.config import load_study
    from benchmarks.rating.load import HOST, _free_port, _wait_until_up
    from benchmarks.rating.study import init_study, open_study
    from benchmarks.rating.synthetic import write_synthetic_study

    config = load_study(str(write_synthetic_study(tmp_path / "source", raters=("r1",))))
    token = init_study(config, tmp_path / "study", database=f"sqlite:///{tmp_path / 'elsewhere.sqlite'}",
                       log=lambda line: None)["r1"]
    assert not (tmp_path / "study" / "study.sqlite").exists()  # the URL given at init is the one used
    port = _free_port()
    url = f"http://{HOST}:{port}"
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.rating", "serve", str(tmp_path / "study"),
                               "--port", str(port)])
    try:
        _wait_until_up(url, server)
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get(f"/r/{token}")
            for _ in range(3):
                page = client.get("/rate", follow_redirects=True)
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
                data = {"csrf": csrf, **{f"score_{c.key}": "2" for c in config.criteria}}
                assert client.post(page.url.path, data=data).status_code == 303
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    study = open_study(tmp_path / "study")
    with db.sessions(study.engine)() as session:
        assert session.scalar(select(func.count(db.Rating.id))) == 3
        assert session.scalar(select(func.count(db.Score.rating_id))) == 3 * 7
