"""The vlm privacy backend: an OpenAI-compatible vision chat model looks at k frames of each clip.

Frames go as base64 JPEG ``image_url`` parts (the OpenAI vision message format that vLLM and Ollama accept).
The answer must be one JSON object with boolean ``subtitles``, ``watermark``, ``names`` and ``faces``; any
other answer is retried like a failed request, and a clip whose check fails for good is left out of the 28K
set with the failure as its reason (a clip is private only when shown to be).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ophora.curation.chat import ChatClient, ChatError, ResponseCache, cache_key
from ophora.curation.config import VlmConfig
from ophora.curation.dynamics import analysis_size
from ophora.curation.stage import ClipItem, Stage, Verdict
from ophora.curation.templates import load_template
from ophora.data.video import Uniform, VideoDecodeError, probe, read_video

__all__ = ["VlmPrivacyStage", "parse_privacy_answer", "PRIVACY_FLAGS"]

PRIVACY_FLAGS = ("subtitles", "watermark", "names", "faces")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_privacy_answer(content: str) -> dict:
    """The validated JSON answer: {flag: bool for PRIVACY_FLAGS, "evidence": str}; ValueError otherwise."""
    text = _FENCE.sub("", content.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError(f"no JSON object in {content[:80]!r}")
    try:
        answer = json.loads(text[start:end + 1])
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg})") from None
    if not isinstance(answer, dict):
        raise ValueError("the JSON answer is not an object")
    missing = [k for k in PRIVACY_FLAGS if not isinstance(answer.get(k), bool)]
    if missing:
        raise ValueError(f"expected true/false for {missing}, got {[answer.get(k) for k in missing]}")
    return {**{k: answer[k] for k in PRIVACY_FLAGS}, "evidence": str(answer.get("evidence", ""))[:200]}


def _jpeg_parts(frames: np.ndarray) -> list[dict]:
    parts = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("JPEG encoding failed")
        parts.append({"type": "image_url",
                      "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode()}})
    return parts


class VlmPrivacyStage(Stage):
    """Keeps a clip in the 28K set only when the model reports none of PRIVACY_FLAGS.

    Scores: the four flags, evidence, cached, tries.
    """

    name = "privacy"
    gate = "28k"

    def __init__(self, config: VlmConfig):
        super().__init__(config)
        self.client = ChatClient(config.chat)
        self.template = load_template(config.template)
        self.cache = ResponseCache(config.chat.cache_dir)

    def check_many(self, items: list[ClipItem]) -> list[Verdict]:
        if len(items) <= 1:
            return [self.check(item) for item in items]
        with ThreadPoolExecutor(max(1, min(self.config.chat.concurrency, len(items)))) as pool:
            return list(pool.map(self.check, items))

    def check(self, item: ClipItem) -> Verdict:
        try:
            info = item.info or probe(item.path)
            size = analysis_size(info, self.config.image_height)
            frames = read_video(item.path, Uniform(self.config.frames), size=size)
        except VideoDecodeError as err:
            return self.verdict(False, f"unreadable video: {err.reason}", error=True)
        parts = _jpeg_parts(frames)
        prompt = self.template.user.format(caption=f"{len(parts)} frames, in order, of one surgical video clip.")
        digest = hashlib.sha256("".join(p["image_url"]["url"] for p in parts).encode()).hexdigest()
        key = cache_key(self.config.chat.model, self.template.version, prompt + digest)
        content, scores = self.cache.get(key), {}
        scores["cached"] = content is not None
        if content is None:
            try:
                messages = self.template.messages([{"type": "text", "text": prompt}, *parts])
                content, scores["tries"] = self.client.complete(messages, validate=parse_privacy_answer)
            except ChatError as err:
                return self.verdict(False, f"privacy check failed: {err.reason}", scores, error=True)
            self.cache.put(key, content, model=self.config.chat.model, template=self.template.version)
        answer = parse_privacy_answer(content)
        scores.update(answer)
        found = [k for k in PRIVACY_FLAGS if answer[k]]
        if found:
            return self.verdict(False, f"the model reports {', '.join(found)} ({answer['evidence']})", scores)
        return self.verdict(True, "ok", scores)
