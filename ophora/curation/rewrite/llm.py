"""The openai rewrite backend: an OpenAI-compatible chat model rewrites each caption, with a disk cache.

Captions are checked first (empty or undecodable captions fail without a request), cut to
``max_input_chars``, looked up in the cache under (model, template version, caption), and otherwise sent
``concurrency`` at a time. The answer is cleaned (quotes, "Instruction:" prefixes), "NONE" or an empty answer
fails the clip, and a long answer is cut to the token budget at a sentence boundary.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from ophora.curation.chat import ChatClient, ChatError, ResponseCache, cache_key
from ophora.curation.config import ChatConfig
from ophora.curation.rewrite.rules import RewriteResult, decode_caption
from ophora.curation.rewrite.tokens import estimate_t5_tokens, fit_sentences
from ophora.curation.templates import load_template

__all__ = ["LlmRewriter"]

_PREFIX = re.compile(r"^\s*(?:instruction|answer|output|rewritten)\s*:\s*", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


def clean_answer(content: str) -> str:
    """The instruction in a model answer: prefixes, wrapping quotes and extra whitespace removed."""
    text = _PREFIX.sub("", content.strip())
    text = text.strip().strip('"“”\'` ').strip()
    return re.sub(r"\s+", " ", text)


class LlmRewriter:
    """Caption rewriting through ``chat`` with prompt ``template`` (see the module docstring)."""

    def __init__(self, chat: ChatConfig, template: str = "rewrite_v1", max_tokens: int = 226,
                 count=estimate_t5_tokens, max_input_chars: int = 8000):
        self.chat = chat
        self.client = ChatClient(chat)
        self.template = load_template(template)
        self.cache = ResponseCache(chat.cache_dir)
        self.max_tokens, self.count, self.max_input_chars = max_tokens, count, max_input_chars
        self.version = f"openai:{chat.model}:{self.template.version}"

    def rewrite_many(self, captions) -> list[RewriteResult]:
        captions = list(captions)
        if len(captions) <= 1:
            return [self.rewrite(c) for c in captions]
        with ThreadPoolExecutor(max(1, min(self.chat.concurrency, len(captions)))) as pool:
            return list(pool.map(self.rewrite, captions))

    def rewrite(self, caption: str | bytes) -> RewriteResult:
        text, problem = decode_caption(caption)
        if problem:
            return RewriteResult(None, problem)
        scores = {"input_chars": len(text), "input_truncated": len(text) > self.max_input_chars}
        text = text[: self.max_input_chars]
        key = cache_key(self.chat.model, self.template.version, text)
        content = self.cache.get(key)
        scores["cached"] = content is not None
        if content is None:
            try:
                messages = self.template.messages(self.template.user.format(caption=text))
                content, scores["tries"] = self.client.complete(messages)
            except ChatError as err:
                return RewriteResult(None, f"rewrite request failed: {err.reason}", scores)
            self.cache.put(key, content, model=self.chat.model, template=self.template.version)
        return self._finish(clean_answer(content), scores)

    def _finish(self, answer: str, scores: dict) -> RewriteResult:
        if not answer or answer.upper().rstrip(".") == "NONE":
            return RewriteResult(None, "the model found no surgical content to describe (empty rewrite)", scores)
        instruction, truncated = fit_sentences(_SENTENCES.split(answer), self.max_tokens, self.count)
        scores.update(tokens=self.count(instruction), output_truncated=truncated)
        if not instruction:
            return RewriteResult(None, f"no sentence of the rewrite fits the {self.max_tokens}-token budget", scores)
        return RewriteResult(instruction, "ok", scores)
