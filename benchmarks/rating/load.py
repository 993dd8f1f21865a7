"""A load test of the rating server on loopback: many simulated raters rate at once, and no rating is lost.

``python -m benchmarks.rating.load [--raters 50] [--seconds 20] [--out FILE.json]`` sets up a synthetic study
(:mod:`benchmarks.rating.synthetic`) with one rater per simulated client in a temporary folder, starts
``python -m benchmarks.rating serve`` on 127.0.0.1 (never another address) in a child process, and lets every
client open its link and rate video after video (GET the page, POST the form) until it has finished or the time
is up. Bounded: at most ``seconds`` of posting and one post per assignment. It then counts the ratings in the
database: every post the server acknowledged (303) must be there. The report gives the counts and the latency
percentiles of posts and pages.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import func, select

from benchmarks.rating import db
from benchmarks.rating.config import load_study
from benchmarks.rating.study import init_study, open_study
from benchmarks.rating.synthetic import write_synthetic_study
from ophora.results import write_json

__all__ = ["run_load", "main"]

HOST = "127.0.0.1"  # the only address this test ever sends to


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before it answered")
        try:
            httpx.get(f"{url}/favicon.ico", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {seconds} s")


async def _rater(url: str, token: str, criteria: list[str], deadline: float, record: dict, index: int) -> None:
    rng = np.random.default_rng(index)
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        await client.get(f"/r/{token}")
        while time.monotonic() < deadline:
            start = time.perf_counter()
            page = await client.get("/rate", follow_redirects=True)
            record["page_s"].append(time.perf_counter() - start)
            if page.url.path == "/finish":
                record["finished"] += 1
                return
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            target = page.url.path
            form = {"csrf": csrf, "comment": f"load {index}", **{f"score_{k}": str(int(rng.integers(1, 6)))
                                                                   for k in criteria}}
            start = time.perf_counter()
            try:
                answer = await client.post(target, data=form)
            except httpx.TransportError:
                record["errors"] += 1
                continue
            record["post_s"].append(time.perf_counter() - start)
            if answer.status_code == 303:
                record["acknowledged"] += 1
            else:
                record["errors"] += 1


async def _all(url: str, tokens: dict[str, str], criteria: list[str], seconds: float) -> dict:
    record = {"page_s": [], "post_s": [], "acknowledged": 0, "errors": 0, "finished": 0}
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_rater(url, token, criteria, deadline, record, i)
                           for i, token in enumerate(tokens.values())))
    return record


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    array = np.asarray(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(array, 50)), 1),
            "p95_ms": round(float(np.percentile(array, 95)), 1), "max_ms": round(float(array.max()), 1)}


def run_load(folder: str | Path, raters: int = 50, seconds: float = 20.0) -> dict:
    """Set up, serve and load a synthetic study under ``folder``; return the report (see the module doc)."""
    folder = Path(folder)
    ids = tuple(f"load{i:03d}" for i in range(raters))
    config = load_study(str(write_synthetic_study(folder / "source", raters=ids)))
    tokens = init_study(config, folder / "study", log=lambda line: None)
    port = _free_port()
    url = f"http://{HOST}:{port}"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.rating", "serve", str(folder / "study"),
                                "--host", HOST, "--port", str(port)], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_until_up(url, process)
        start = time.perf_counter()
        record = asyncio.run(_all(url, tokens, [c.key for c in config.criteria], seconds))
        elapsed = time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(30)
    study = open_study(folder / "study")
    with db.sessions(study.engine)() as session:
        stored = session.scalar(select(func.count(db.Rating.id)))
    study.engine.dispose()
    return {"raters": raters, "seconds_allowed": seconds, "seconds_taken": round(elapsed, 2),
            "assignments_per_rater": 13, "acknowledged": record["acknowledged"], "stored": stored,
            "lost": record["acknowledged"] - stored, "errors": record["errors"], "finished": record["finished"],
            "posts_per_s": round(record["acknowledged"] / elapsed, 1), "post": _percentiles(record["post_s"]),
            "page": _percentiles(record["page_s"]), "database": "SQLite (WAL), one uvicorn process",
            "cpu_count": os.cpu_count(), "load_average_1min_after": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rating.load", description=__doc__.split("\n")[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", help="write the report here as JSON (with provenance)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rating-load-") as folder:
        report = run_load(folder, args.raters, args.seconds)
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, {"load": report}, config=vars(args))
    return 0 if report["lost"] == 0 and report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
