"""The openai rewrite and vlm privacy backends against a real HTTP server on loopback that speaks chat-completions.

The server answers from a script: 429 (with Retry-After), 500, a stall past the client's timeout, malformed
JSON, a refusal (401), or a good answer. Nothing leaves the machine.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from ophora.configs import build_config
from ophora.curation.chat import ChatClient, ChatError, cache_key
from ophora.curation.config import ChatConfig, CurationConfig, VlmConfig, plain
from ophora.curation.privacy.vlm import VlmPrivacyStage, parse_privacy_answer
from ophora.curation.rewrite.llm import LlmRewriter, clean_answer
from ophora.curation.run import curate
from ophora.curation.stage import ClipItem
from ophora.data import manifests
from ophora.data.video import write_video

SECRET = "sk-test-0123456789-SECRET"
GOOD_PRIVACY = '{"subtitles": false, "watermark": false, "names": false, "faces": false, "evidence": "none"}'


class FakeChat(ThreadingHTTPServer):
    """Loopback chat-completions server. ``script`` holds the next answers; then ``default`` answers."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: deque = deque()
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.privacy_answer = GOOD_PRIVACY

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def answer_for(self, body: dict) -> str:
        last = body["messages"][-1]["content"]
        if isinstance(last, list):
            return self.privacy_answer
        return "Instruction: A keratome creates the main incision in the clear cornea."


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        server: FakeChat = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append(body)
            server.headers_seen.append(dict(self.headers))
            step = server.script.popleft() if server.script else "ok"
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            self._respond(server, step, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with server.lock:
                server.in_flight -= 1

    def _respond(self, server: FakeChat, step, body: dict):
        time.sleep(server.delay)
        if step == "timeout":
            time.sleep(1.0)
            return
        if isinstance(step, int):
            self._send(step, b'{"error": "scripted"}', {"Retry-After": "0"} if step == 429 else {})
        elif step == "malformed":
            self._send(200, b'{"choices": [{"message": ')
        else:
            content = step if isinstance(step, str) and step != "ok" else server.answer_for(body)
            self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

    def _send(self, status: int, data: bytes, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    fake = FakeChat()
    thread = threading.Thread(target=fake.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    fake.shutdown()
    fake.server_close()


def chat_config(server, tmp_path, **overrides) -> ChatConfig:
    values = dict(base_url=server.url, model="test-model", timeout_s=0.4, max_retries=4, backoff_s=0.01,
                  backoff_max_s=0.05, concurrency=3, cache_dir=str(tmp_path / "cache"))
    return ChatConfig(**{**values, **overrides})


def test_rewrite_sends_the_versioned_template_with_examples_and_the_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_LLM_API_KEY", SECRET)
    result = LlmRewriter(chat_config(server, tmp_path)).rewrite("so um i'm making the incision with the keratome")
    assert result.text == "A keratome creates the main incision in the clear cornea."
    assert result.scores["tries"] == 1 and not result.scores["cached"]
    body = server.requests[0]
    assert body["model"] == "test-model" and body["temperature"] == 0.0
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system" and roles.count("assistant") >= 3 and roles[-1] == "user"
    assert "making the incision with the keratome" in body["messages"][-1]["content"]
    assert server.headers_seen[0]["Authorization"] == f"Bearer {SECRET}"


def test_cache_is_keyed_by_model_template_version_and_caption(server, tmp_path):
    config = chat_config(server, tmp_path)
    LlmRewriter(config).rewrite("the phaco tip sculpts a groove")
    again = LlmRewriter(config).rewrite("the phaco tip sculpts a groove")
    assert len(server.requests) == 1 and again.scores["cached"]
    LlmRewriter(config).rewrite("the phaco tip sculpts a deeper groove")
    LlmRewriter(chat_config(server, tmp_path, model="other-model")).rewrite("the phaco tip sculpts a groove")
    template = tmp_path / "mine.yaml"
    template.write_text("version: rewrite-test\nsystem: Rewrite.\nuser: '{caption}'\n")
    LlmRewriter(config, template=str(template)).rewrite("the phaco tip sculpts a groove")
    assert len(server.requests) == 4
    assert len({cache_key("m", "v1", "c"), cache_key("m", "v2", "c"), cache_key("n", "v1", "c")}) == 3


def test_429_500_timeout_and_malformed_answers_are_retried(server, tmp_path):
    server.script.extend([429, 500, "timeout", "malformed"])
    result = LlmRewriter(chat_config(server, tmp_path)).rewrite("the cannula injects viscoelastic")
    assert result.text is not None and result.scores["tries"] == 5
    assert len(server.requests) == 5


@pytest.mark.parametrize("step, words", [(500, "HTTP 500"), (429, "HTTP 429"), ("timeout", "timed out"),
                                         ("malformed", "malformed chat-completions answer")])
def test_persistent_failures_are_recorded_with_their_reason(server, tmp_path, step, words):
    server.script.extend([step] * 10)
    result = LlmRewriter(chat_config(server, tmp_path, max_retries=2)).rewrite("the cannula injects viscoelastic")
    assert result.text is None and words in result.reason and "gave up after 3 tries" in result.reason
    assert len(server.requests) == 3


def test_client_errors_other_than_429_are_not_retried(server, tmp_path):
    server.script.append(401)
    with pytest.raises(ChatError, match="HTTP 401.*not retried"):
        ChatClient(chat_config(server, tmp_path)).complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1


def test_empty_or_none_answers_drop_the_clip_and_long_answers_are_cut(server, tmp_path):
    server.script.extend(["NONE", "  ", "Phaco. " * 400])
    rewriter = LlmRewriter(chat_config(server, tmp_path, concurrency=1))
    nothing, empty, long = rewriter.rewrite_many(["thanks for watching", "see you", "the phaco tip"])
    assert nothing.text is None and "no surgical content" in nothing.reason
    assert empty.text is None
    assert long.text and long.scores["output_truncated"] and long.scores["tokens"] <= 226
    assert rewriter.rewrite("").reason == "empty caption" and len(server.requests) == 3
    assert clean_answer('Instruction: "A cannula flushes the chamber."') == "A cannula flushes the chamber."


def test_concurrency_is_bounded(server, tmp_path):
    server.delay = 0.1
    results = LlmRewriter(chat_config(server, tmp_path, concurrency=3)).rewrite_many(
        [f"the cannula injects fluid number {i}" for i in range(9)])
    assert all(r.text for r in results)
    assert 2 <= server.max_in_flight <= 3


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after(tmp_path):
    client = ChatClient(ChatConfig(backoff_s=1.0, backoff_max_s=30.0))
    waits = [client._backoff(attempt, None) for attempt in range(6)]
    for attempt, wait in enumerate(waits):
        assert 0.5 * min(2 ** attempt, 30) <= wait <= min(2 ** attempt, 30)
    assert client._backoff(0, 7.0) == 7.0 and client._backoff(0, 99.0) == 30.0


# ------------------------------------------------------------------------------------------------ vlm privacy


def moving_frames(seed: int, t: int, h: int, w: int) -> np.ndarray:
    """A smooth random texture sliding one pixel per frame: uint8 [t, h, w, 3] (no cuts, not frozen)."""
    small = np.random.default_rng(seed).random((h // 8, (w + t) // 8 + 1, 3)).astype(np.float32)
    big = np.kron(small, np.ones((8, 8, 1), np.float32))[:h] * 200 + 20
    return np.stack([big[:, i:i + w] for i in range(t)]).astype(np.uint8)


@pytest.fixture
def clip(tmp_path):
    return ClipItem("c1", "caption", write_video(tmp_path / "c1.mp4", moving_frames(0, 8, 64, 96), fps=8))


def vlm_stage(server, tmp_path, **chat) -> VlmPrivacyStage:
    return VlmPrivacyStage(VlmConfig(frames=3, image_height=48, chat=chat_config(server, tmp_path, **chat)))


def test_vlm_sends_k_jpeg_frames_and_keeps_a_clean_clip(server, tmp_path, clip):
    verdict = vlm_stage(server, tmp_path).check(clip)
    assert verdict.keep and verdict.scores["subtitles"] is False
    parts = server.requests[0]["messages"][-1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 3 and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)


def test_vlm_reported_watermark_drops_from_28k(server, tmp_path, clip):
    server.privacy_answer = ('```json\n{"subtitles": false, "watermark": true, "names": false, "faces": false, '
                             '"evidence": "logo top right"}\n```')
    verdict = vlm_stage(server, tmp_path).check(clip)
    assert not verdict.keep and not verdict.error and "watermark" in verdict.reason and "logo" in verdict.reason


def test_vlm_invalid_answers_are_retried_then_recorded_as_failures(server, tmp_path, clip):
    server.script.extend(['{"subtitles": "maybe"}', "I think it is fine."])
    verdict = vlm_stage(server, tmp_path).check(clip)
    assert verdict.keep and verdict.scores["tries"] == 3
    server.privacy_answer = '{"subtitles": false}'
    failed = vlm_stage(server, tmp_path, max_retries=1, cache_dir=str(tmp_path / "other")).check(clip)
    assert failed.error and not failed.keep and "privacy check failed: invalid answer" in failed.reason
    with pytest.raises(ValueError, match="expected true/false"):
        parse_privacy_answer('{"subtitles": false, "watermark": false, "names": false}')


def test_key_never_reaches_files_or_output(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPHORA_LLM_API_KEY", SECRET)
    root = tmp_path / "raw"
    clips = []
    for i in range(3):
        path = write_video(root / "clips" / f"v{i}.mp4", moving_frames(i, 10, 64, 64), fps=8)
        clips.append(manifests.RawClip(f"v{i}", f"now i'm polishing the capsule {i}", "src", 0.0, 1.25, path))
    manifests.write_raw_set(root / "raw.csv", clips)
    chat = {k: v for k, v in plain(chat_config(server, tmp_path)).items() if k != "api_key"}
    config = build_config(CurationConfig, {"resolution": {"min_width": 64, "min_height": 64},
                               "dynamics": {"min_motion": 0.0},
                               "rewrite": {"backend": "openai", "openai": chat},
                               "privacy": {"backend": "vlm", "vlm": {"frames": 2, "chat": chat}}})
    assert isinstance(config, CurationConfig) and SECRET not in repr(config)
    summary = curate(root / "raw.csv", tmp_path / "out", config, progress=False)
    assert summary["in_160k"] == 3 and summary["in_28k"] == 3
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in server.headers_seen)
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
