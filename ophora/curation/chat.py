"""A small client for OpenAI-compatible chat endpoints (vLLM, Ollama, hosted APIs), stdlib only.

``POST {base_url}/chat/completions`` with ``{"model", "messages", "temperature", "max_tokens"}``; the answer is
``choices[0].message.content``. Failures that may pass are retried with exponential backoff and jitter (or
the server's ``Retry-After``): HTTP 429 and 5xx, timeouts, dropped connections, and answers that are not the
expected JSON or that the caller's ``validate`` rejects. Other HTTP errors (400, 401, 404 ...) fail at once;
after a 401 or 403 (a bad key or a refused account) the client sends nothing more and fails every later
request at once with the same reason. After the last try, :class:`ChatError` carries the reason.

``timeout_s`` is a deadline for the whole request: a watchdog shuts the socket down when it passes, so a server
that trickles bytes cannot hold a request longer (socket timeouts alone bound each read, not the request).

The API key goes into the Authorization header only. Every reason is redacted
(:func:`ophora.curation.config.redact`: the key and any Authorization or Bearer value become ``***``) and
error bodies are cut to :data:`MAX_DETAIL` characters after redaction, so a server that echoes the header
cannot put the key into a message, a verdict or a file.

:class:`ResponseCache` stores successful answers on disk, one file per key, written atomically, so that
several processes can share it and a rerun never pays twice for the same request.
"""
from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from ophora.curation.config import ChatConfig, redact
from ophora.data.atomic import atomic_write_text

__all__ = ["ChatError", "ChatClient", "ResponseCache", "default_cache_dir", "cache_key", "MAX_DETAIL"]

MAX_DETAIL = 200  # characters of an error body a reason quotes (after redaction)
_READ_DETAIL = 4096  # bytes of an error body read to find them
_REFUSED = (401, 403)  # the key or the account is refused: retrying cannot help


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
        self.shown_url = _shown_url(self.url)
        self._sleep = sleep
        self._refused: str | None = None  # the reason of a 401/403: later requests fail without being sent

    def __repr__(self) -> str:
        return f"ChatClient(url={self.shown_url!r}, model={self.config.model!r})"

    def complete(self, messages: list[dict], validate: Callable[[str], Any] | None = None) -> tuple[str, int]:
        """(content, tries) of the first acceptable answer; ``validate(content)`` raising ValueError retries."""
        try:
            return self._complete(messages, validate)
        except ChatError as err:
            raise ChatError(self._redact(err.reason)) from None

    def _complete(self, messages: list[dict], validate: Callable[[str], Any] | None) -> tuple[str, int]:
        tries = self.config.max_retries + 1
        for attempt in range(tries):
            if self._refused:
                raise ChatError(self._refused)
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

    def _redact(self, text: str) -> str:
        return redact(text, (self.config.resolved_key(),))

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
        timeout = self.config.timeout_s
        watchdog = _Watchdog(timeout)
        try:
            with _opener(watchdog).open(self._request(messages), timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            if watchdog.expired:
                raise _Retry(f"timed out after {timeout:g} s") from None
            failure = _http_failure(err, self._redact)
            if err.code in _REFUSED:
                self._refused = f"{failure} (not retried; no further requests are sent to {self.shown_url})"
                raise ChatError(self._refused) from None
            raise failure from None
        except (TimeoutError, socket.timeout):
            raise _Retry(f"timed out after {timeout:g} s") from None
        except urllib.error.URLError as err:
            if watchdog.expired or isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise _Retry(f"timed out after {timeout:g} s") from None
            raise _Retry(f"cannot reach {self.shown_url} ({self._redact(str(err.reason))})") from None
        except (OSError, http.client.HTTPException) as err:
            if watchdog.expired:
                raise _Retry(f"timed out after {timeout:g} s") from None
            raise _Retry(f"connection to {self.shown_url} failed ({type(err).__name__})") from None
        finally:
            watchdog.cancel()
        if watchdog.expired:  # the body may have been cut short by the watchdog without an error
            raise _Retry(f"timed out after {timeout:g} s")
        return _content(raw, self._redact)


class _Watchdog:
    """Shuts down the sockets of one request when ``seconds`` have passed since it started.

    A blocked read then returns or fails at once, so ``timeout_s`` bounds the request's wall time whatever the
    server does. The raw socket level ``shutdown`` is used (also for TLS sockets), and sockets closed meanwhile
    are skipped (their descriptor is -1 once really closed, so no other file can be hit).
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _WatchedHTTP(http.client.HTTPConnection):
    """An HTTP connection whose sockets are handed to a :class:`_Watchdog` as soon as they exist."""

    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_watched_socket, watchdog)


class _WatchedHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog
        self._create_connection = functools.partial(_watched_socket, watchdog)

    def connect(self) -> None:
        super().connect()
        self._watchdog.watch(self.sock)  # the TLS socket that replaced the raw one


def _watched_socket(watchdog: _Watchdog, *args, **kwargs) -> socket.socket:
    return watchdog.watch(socket.create_connection(*args, **kwargs))


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, watchdog=self._watchdog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self._watchdog = watchdog

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, watchdog=self._watchdog), req,
                            context=self._context)


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's default opener (proxies from the environment included) with watched connections."""
    return urllib.request.build_opener(_HTTPHandler(watchdog), _HTTPSHandler(watchdog))


def _shown_url(url: str) -> str:
    """``url`` without user:password and query string (either may carry a credential)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _http_failure(err: urllib.error.HTTPError, scrub: Callable[[str], str]) -> Exception:
    detail = _detail(_read_some(err), scrub)
    reason = f"HTTP {err.code} from the endpoint" + (f": {detail}" if detail else "")
    if err.code == 429 or err.code >= 500:
        return _Retry(reason, _retry_after(err.headers.get("Retry-After")))
    return ChatError(reason + ("" if err.code in _REFUSED else " (not retried)"))


def _read_some(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read(_READ_DETAIL) or b""
    except (OSError, http.client.HTTPException):
        return b""


def _detail(raw: bytes, scrub: Callable[[str], str]) -> str:
    """An error body as one redacted line of at most :data:`MAX_DETAIL` characters (redacted before it is cut,
    so no part of a secret survives the cut)."""
    text = re.sub(r"\s+", " ", scrub(raw.decode("utf-8", "replace"))).strip()
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _content(raw: bytes, scrub: Callable[[str], str]) -> str:
    """``choices[0].message.content`` of a chat-completions answer, or a retryable failure."""
    try:
        document = json.loads(raw)
        content = document["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retry(f"malformed chat-completions answer: {_detail(raw, scrub)!r}") from None
    if not isinstance(content, str):
        raise _Retry(f"malformed chat-completions answer: content is {type(content).__name__}")
    return content
