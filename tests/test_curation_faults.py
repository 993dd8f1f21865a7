"""Curation under faults, against a loopback HTTP server that misbehaves on purpose (nothing leaves the machine).

Each probe of issue 14 as a test: an endpoint that answers 503 and later recovers, one that refuses the key and
echoes it in its error body, one that trickles its answer a byte at a time, a caption changed between runs,
temporary files left by ``kill -9``, clip ids with surrounding whitespace, a ledger deleted between runs, a
full disk. Every server loop is bounded in count and in time.
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ophora.curation.chat import ChatClient, ChatError
from ophora.curation.cli import main
from ophora.curation.config import ChatConfig
from ophora.curation.ledger import Ledger, read_ledgers
from ophora.data.video import write_video

SECRET = "sk-fault-9f8e7d6c5b4a-SECRET"
CLIPS = 4
TRICKLE_BYTES = 100  # the trickle server gives up after this many bytes (20 s), or when the client hangs up


class FaultServer(ThreadingHTTPServer):
    """Chat-completions on 127.0.0.1: ``mode`` is "ok", an HTTP status (its body echoes the Authorization
    header), "trickle-body" or "trickle-headers" (one byte every 0.2 s)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode: str | int = "ok"
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def captions(self) -> list[str]:
        return [_step(r["messages"][-1]["content"]) for r in self.requests]


def _step(text: str) -> str:
    return re.search(r"step-(\w+)", text).group(1)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server: FaultServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append({**body, "authorization": self.headers.get("Authorization", "")})
            mode = server.mode
        try:
            if isinstance(mode, int):
                echo = {"error": "refused", "you_sent": {"Authorization": self.headers.get("Authorization")}}
                self._send(mode, json.dumps(echo).encode())
            elif mode.startswith("trickle"):
                self._trickle(headers=mode == "trickle-headers")
            else:
                step = _step(body["messages"][-1]["content"])
                answer = f"Instruction: A phaco tip works on the lens in step {step}."
                self._send(200, json.dumps({"choices": [{"message": {"content": answer}}]}).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, data: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _trickle(self, headers: bool):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        if not headers:
            self.wfile.write(head)
            self.wfile.flush()
        source = head if headers else b"{" * TRICKLE_BYTES
        deadline = time.monotonic() + 20
        for byte in source[:TRICKLE_BYTES]:
            if time.monotonic() > deadline:
                break
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.2)


@pytest.fixture
def server():
    fake = FaultServer()
    thread = threading.Thread(target=fake.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    fake.shutdown()
    fake.server_close()


def moving_frames(seed: int, t: int = 10, size: int = 64) -> np.ndarray:
    """A smooth random texture sliding one pixel per frame: uint8 [t, size, size, 3] (no cuts, not frozen)."""
    small = np.random.default_rng(seed).random((size // 8, (size + t) // 8 + 1, 3)).astype(np.float32)
    big = np.kron(small, np.ones((8, 8, 1), np.float32))[:size] * 200 + 20
    return np.stack([big[:, i:i + size] for i in range(t)]).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("fault_videos")
    return [write_video(root / f"v{i}.mp4", moving_frames(i), fps=8) for i in range(CLIPS)]


def write_raw(folder: Path, videos: list[Path], ids=None, captions=None) -> Path:
    """A raw set of ``videos`` (copied into ``folder/clips``): ids c0.., captions naming step-<id>."""
    ids = ids or [f"c{i}" for i in range(len(videos))]
    captions = captions or [f"now i'm polishing the capsule, step-{i.strip()}" for i in ids]
    rows = []
    for clip_id, caption, video in zip(ids, captions, videos):
        path = folder / "clips" / video.name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(video.read_bytes())
        rows.append({"clip_id": clip_id, "caption": caption, "source_video": "s", "start": 0.0, "end": 1.25,
                     "path": f"clips/{video.name}"})
    pd.DataFrame(rows).to_csv(folder / "raw.csv", index=False)
    return folder / "raw.csv"


def config_file(tmp_path: Path, server: FaultServer | None = None, **execution) -> Path:
    settings = {"resolution": {"min_width": 64, "min_height": 64}, "dynamics": {"min_motion": 0.0},
                "privacy": {"overlay": {"faces": False}}, "execution": {"batch_size": 4, **execution}}
    if server is not None:
        settings["rewrite"] = {"backend": "openai", "openai": {
            "base_url": server.url, "model": "m", "timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.01,
            "backoff_max_s": 0.02, "concurrency": 2, "cache_dir": str(tmp_path / "llm-cache")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def run_cli(raw: Path, out: Path, config: Path, *extra: str) -> int:
    return main(["--input", str(raw), "--out", str(out), "--config", str(config), "--quiet", *extra])


def instructions(out: Path, name: str = "ophora_160k") -> dict[str, str]:
    table = pd.read_csv(out / name / "instructions.csv", keep_default_na=False)
    return dict(zip(table["clip id"], table["instruction"]))


def test_an_endpoint_down_for_a_whole_run_fails_it_and_the_next_run_curates_every_clip(server, tmp_path, videos,
                                                                                        capsys):
    raw, out, config = write_raw(tmp_path / "raw", videos), tmp_path / "out", config_file(tmp_path, server)
    server.mode = 503
    assert run_cli(raw, out, config) == 1
    err = capsys.readouterr().err
    assert "every clip that reached the rewrite stage failed there (4 clip(s))" in err and "HTTP 503" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert len(server.requests) == CLIPS * 3  # 503 is retried within the run: max_retries=2 after the first try
    records = read_ledgers(out / ".ledger")
    assert len(records) == CLIPS and all(r["failed"] for r in records.values())  # nothing recorded as finished
    assert instructions(out) == {} and "4 clip(s) failed" in (out / "report.md").read_text()

    server.mode, server.requests = "ok", []
    assert run_cli(raw, out, config) == 0
    assert sorted(server.captions()) == [f"c{i}" for i in range(CLIPS)]  # every failed clip retried, once
    assert instructions(out) == {f"c{i}": f"A phaco tip works on the lens in step c{i}." for i in range(CLIPS)}
    assert all(not r["failed"] and r["run"] == 2 for r in read_ledgers(out / ".ledger").values())
    assert run_cli(raw, out, config) == 0 and len(server.requests) == CLIPS  # a third run has nothing to do


@pytest.mark.parametrize("status", [401, 403, 503])
def test_a_key_echoed_by_the_server_reaches_no_file_and_no_output(server, tmp_path, videos, capfd, monkeypatch,
                                                                   status):
    monkeypatch.setenv("OPHORA_LLM_API_KEY", SECRET)
    raw, out, config = write_raw(tmp_path / "raw", videos), tmp_path / "out", config_file(tmp_path, server)
    server.mode = status
    assert run_cli(raw, out, config) == 1
    assert server.requests and all(r["authorization"] == f"Bearer {SECRET}" for r in server.requests)
    if status in (401, 403):  # refused keys are not retried: at most one request per concurrent slot
        assert len(server.requests) <= 2
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err and f"HTTP {status}" in captured.err
    table = pd.read_csv(out / "provenance.csv", keep_default_na=False)
    assert table["rewrite_reason"].str.contains(r"\*\*\*", regex=True).all()  # the echo is there, redacted
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "provenance.parquet" for p in files) and any(p.suffix == ".jsonl" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("status", [401, 503])
def test_chat_errors_redact_a_key_echoed_in_the_error_body(server, tmp_path, monkeypatch, status):
    monkeypatch.setenv("OPHORA_LLM_API_KEY", SECRET)
    server.mode = status
    client = ChatClient(ChatConfig(base_url=server.url, model="m", max_retries=1, backoff_s=0.01,
                                   cache_dir=str(tmp_path)))
    with pytest.raises(ChatError) as caught:
        client.complete([{"role": "user", "content": "step-x"}])
    assert SECRET not in str(caught.value) and '"Authorization": "***"' in caught.value.reason
    assert server.requests[0]["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("where", ["trickle-body", "trickle-headers"])
def test_the_timeout_bounds_the_whole_request_not_each_read(server, tmp_path, where):
    server.mode = where
    client = ChatClient(ChatConfig(base_url=server.url, model="m", timeout_s=1.0, max_retries=0,
                                   cache_dir=str(tmp_path)))
    start = time.monotonic()
    with pytest.raises(ChatError, match=r"timed out after 1 s; gave up after 1 tries"):
        client.complete([{"role": "user", "content": "step-x"}])
    assert time.monotonic() - start < 1.5


def test_a_changed_caption_or_file_recurates_exactly_those_clips(server, tmp_path, videos):
    folder, out, config = tmp_path / "raw", tmp_path / "out", config_file(tmp_path, server)
    raw = write_raw(folder, videos)
    assert run_cli(raw, out, config) == 0 and len(server.requests) == CLIPS
    captions = [f"now i'm polishing the capsule, step-c{i}" for i in range(CLIPS)]
    captions[1] = "the cannula flushes the chamber, step-new1"
    write_raw(folder, videos, captions=captions)
    later = time.time() + 5
    os.utime(folder / "clips" / videos[2].name, (later, later))  # same bytes, another modification time
    server.requests = []
    assert run_cli(raw, out, config) == 0
    assert server.captions() == ["new1"]  # c2's caption is in the response cache: no request
    assert instructions(out) == {"c0": "A phaco tip works on the lens in step c0.",
                                 "c1": "A phaco tip works on the lens in step new1.",
                                 "c2": "A phaco tip works on the lens in step c2.",
                                 "c3": "A phaco tip works on the lens in step c3."}
    runs = {clip_id: record["run"] for clip_id, record in read_ledgers(out / ".ledger").items()}
    assert runs == {"c0": 1, "c1": 2, "c2": 2, "c3": 1}
    row = pd.read_csv(out / "provenance.csv", keep_default_na=False).set_index("clip_id").loc["c1"]
    assert row["caption"] == captions[1] and row["instruction"].endswith("step new1.")
    assert json.loads((out / "run.json").read_text())["resumed_clips"] == 2


def test_temporary_files_of_a_run_killed_with_sigkill_are_removed_by_the_next_run(tmp_path, videos):
    raw, out = write_raw(tmp_path / "raw", videos), tmp_path / "out"
    assert run_cli(raw, out, config_file(tmp_path)) == 0
    targets = [out / "provenance.parquet", out / "provenance.csv", out / "ophora_160k" / "instructions.csv",
               out / "ophora_28k" / "clips" / "c0.mp4", out / ".ledger" / "settings.json"]
    killed = ("import os, signal, sys\nfrom ophora.data.atomic import atomic_path\n"
              "for target in sys.argv[1:]:\n    atomic_path(target).__enter__().write_bytes(b'partial')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    process = subprocess.run([sys.executable, "-c", killed, *map(str, targets)], timeout=60)
    assert process.returncode == -signal.SIGKILL
    left = sorted(p for p in out.rglob(".*tmp*") if p.is_file())
    assert len(left) == len(targets)
    (out / "notes.tmp.txt").write_text("mine")  # not a temporary file of a run: kept
    assert run_cli(raw, out, config_file(tmp_path)) == 0
    assert not [p for p in out.rglob(".*tmp*") if p.is_file()]
    assert (out / "notes.tmp.txt").read_text() == "mine" and len(pd.read_parquet(out / "provenance.parquet")) == 4


def test_clip_ids_are_stripped_and_ids_equal_after_stripping_are_refused_with_the_row(tmp_path, videos, capsys):
    out = tmp_path / "out"
    raw = write_raw(tmp_path / "raw", videos[:2], ids=[" c0", "c1\t"])
    assert run_cli(raw, out, config_file(tmp_path)) == 0
    assert set(instructions(out)) == {"c0", "c1"}
    assert sorted(p.name for p in (out / "ophora_160k" / "clips").iterdir()) == ["c0.mp4", "c1.mp4"]
    clash = write_raw(tmp_path / "clash", videos[:2], ids=["c0", " c0"])
    assert run_cli(clash, tmp_path / "out2", config_file(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "c0" in err and "Traceback" not in err


def test_a_run_without_a_ledger_leaves_no_stale_clip_in_the_sets(tmp_path, videos):
    out, config = tmp_path / "out", config_file(tmp_path)
    assert run_cli(write_raw(tmp_path / "all", videos), out, config) == 0
    assert len(list((out / "ophora_160k" / "clips").iterdir())) == CLIPS
    for path in (out / ".ledger").iterdir():  # what the message about other settings advises
        path.unlink()
    (out / ".ledger").rmdir()
    assert run_cli(write_raw(tmp_path / "two", videos[:2], ids=["x0", "x1"]), out, config) == 0
    for name in ("ophora_160k", "ophora_28k"):
        assert sorted(p.name for p in (out / name / "clips").iterdir()) == ["x0.mp4", "x1.mp4"]
        assert set(instructions(out, name)) <= {"x0", "x1"}


def test_partial_failures_exit_0_unless_strict(tmp_path, videos, capsys):
    raw = write_raw(tmp_path / "raw", videos)
    (tmp_path / "raw" / "clips" / videos[3].name).unlink()  # one clip cannot be read
    assert run_cli(raw, tmp_path / "out", config_file(tmp_path)) == 0
    assert "1 clip(s) failed and will be retried by the next run" in capsys.readouterr().out
    assert run_cli(raw, tmp_path / "out", config_file(tmp_path), "--strict") == 1
    assert "1 of 4 clips failed (execution.strict)" in capsys.readouterr().err
    assert run_cli(raw, tmp_path / "out", config_file(tmp_path, strict=True)) == 1
    records = read_ledgers(tmp_path / "out" / ".ledger")
    assert records["c3"]["failed"] and records["c3"]["run"] == 3 and records["c0"]["run"] == 1


def test_a_full_disk_prints_one_line_without_a_traceback(tmp_path, videos, capsys, monkeypatch):
    def full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(Ledger, "append", full)
    raw = write_raw(tmp_path / "raw", videos[:1])
    assert run_cli(raw, tmp_path / "out", config_file(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err and "run the same command again" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(OSError):
        run_cli(raw, tmp_path / "out", config_file(tmp_path), "--debug")
