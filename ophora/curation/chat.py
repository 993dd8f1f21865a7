"""A small client for OpenAI-compatible chat endpoints (vLLM, Ollama, hosted APIs), stdlib only.

``POST {base_url}/chat/completions`` with ``{"model", "messages", "temperature", "max_tokens"}``; the answer is
``choices[0].message.content``. Failures that may pass are retried with exponential backoff and jitter (or
the server's ``Retry-After``): HTTP 429 and 5xx, timeouts, dropped connections, and answers that are not the
expected JSON or that the caller's ``validate`` rejects. Other HTTP errors (400, 401, 404 ...) fail at once.
After the last try, :class:`ChatError` carries the reason. The API key goes into the Authorization header
only; it is never part of a message, an exception or a log line.

:class:`ResponseCache` stores successful answers on disk, one file per key, written atomically, so that
several processes can share it and a rerun never pays twice for the same request.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from ophora.curation.config import ChatConfig
from ophora.data.atomic import atomic_write_text

__all__ = ["ChatError", "ChatClient", "ResponseCache", "default_cache_dir", "cache_key"]


class ChatError(RuntimeError):
    """A chat request that failed for good; ``reason`` says why (last error, number of tries)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class _Retry(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After in seconds, if any."""

    def __init__(self, reason: str, wait: float | None = None):
        self.reason, self.wait = reason, wait
        super().__init__(reason)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ophora/curation-llm`` (``~/.cache/ophora/curation-llm`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ophora" / "curation-llm"


def cache_key(model: str, template_version: str, payload: str) -> str:
    """SHA-256 hex key of (model, template version, payload): the one place cache keys are made."""
    return hashlib.sha256(json.dumps([model, template_version, payload]).encode()).hexdigest()


class ResponseCache:
    """Answers on disk under ``folder/<key[:2]>/<key>.json``."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))["content"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, content: str, **meta: str) -> None:
        atomic_write_text(self._path(key), json.dumps({**meta, "content": content}))


class ChatClient:
    """Sends chat requests with retries (see the module docstring). Thread-safe: holds no connection state."""

    def __init__(self, config: ChatConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.config.model!r})"

    def complete(self, messages: list[dict], validate: Callable[[str], Any] | None = None) -> tuple[str, int]:
        """(content, tries) of the first acceptable answer; ``validate(content)`` raising ValueError retries."""
        tries = self.config.max_retries + 1
        for attempt in range(tries):
            try:
                content = self._once(messages)
                if validate is not None:
                    try:
                        validate(content)
                    except ValueError as err:
                        raise _Retry(f"invalid answer ({err})") from None
                return content, attempt + 1
            except _Retry as failure:
                if attempt == tries - 1:
                    raise ChatError(f"{failure.reason}; gave up after {tries} tries") from None
                self._sleep(self._backoff(attempt, failure.wait))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return min(server_wait, self.config.backoff_max_s)
        base = min(self.config.backoff_s * 2 ** attempt, self.config.backoff_max_s)
        return base * random.uniform(0.5, 1.0)

    def _request(self, messages: list[dict]) -> urllib.request.Request:
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens}
        headers = {"Content-Type": "application/json"}
        key = self.config.resolved_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")

    def _once(self, messages: list[dict]) -> str:
        try:
            with urllib.request.urlopen(self._request(messages), timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise _http_failure(err) from None
        except (TimeoutError, socket.timeout):
            raise _Retry(f"timed out after {self.config.timeout_s:g} s") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise _Retry(f"timed out after {self.config.timeout_s:g} s") from None
            raise _Retry(f"cannot reach {self.url} ({err.reason})") from None
        except (ConnectionError, http.client.HTTPException) as err:
            raise _Retry(f"connection to {self.url} failed ({type(err).__name__})") from None
        return _content(raw)


def _http_failure(err: urllib.error.HTTPError) -> Exception:
    detail = err.read(300).decode("utf-8", "replace").strip()
    reason = f"HTTP {err.code} from the endpoint" + (f": {detail}" if detail else "")
    if err.code == 429 or err.code >= 500:
        return _Retry(reason, _retry_after(err.headers.get("Retry-After")))
    return ChatError(reason + " (not retried)")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _content(raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions answer, or a retryable failure."""
    try:
        document = json.loads(raw)
        content = document["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retry(f"malformed chat-completions answer: {raw[:120]!r}") from None
    if not isinstance(content, str):
        raise _Retry(f"malformed chat-completions answer: content is {type(content).__name__}")
    return content
