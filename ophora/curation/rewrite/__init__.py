"""Caption rewriting: the stage and its two backends, ``rules`` (embedded) and ``openai``."""
from __future__ import annotations

from ophora.curation.config import RewriteConfig
from ophora.curation.rewrite.rules import RewriteResult, RulesRewriter
from ophora.curation.rewrite.tokens import estimate_t5_tokens, token_counter
from ophora.curation.stage import ClipItem, Stage, Verdict

__all__ = ["RewriteStage", "RewriteResult", "RulesRewriter", "make_rewriter", "estimate_t5_tokens"]


def make_rewriter(config: RewriteConfig):
    """The backend named by ``config.backend``."""
    count = token_counter(config.tokenizer)
    if config.backend == "openai":
        from ophora.curation.rewrite.llm import LlmRewriter

        return LlmRewriter(config.openai, config.template, config.max_tokens, count, config.max_input_chars)
    return RulesRewriter(config.max_tokens, count, config.max_input_chars)


class RewriteStage(Stage):
    """Narration caption -> generation instruction; an empty or unusable rewrite drops the clip.

    Scores: input_chars, input_truncated, tokens (of the instruction, end token included), output_truncated,
    and for the openai backend cached and tries. The verdict's ``output`` is the instruction.
    """

    name = "rewrite"

    def __init__(self, config: RewriteConfig):
        super().__init__(config)
        self.backend = make_rewriter(config)

    @property
    def version(self) -> str:
        return f"{super().version}:{self.backend.version}"

    def check_many(self, items: list[ClipItem]) -> list[Verdict]:
        results = self.backend.rewrite_many([item.caption for item in items])
        verdicts = []
        for item, result in zip(items, results):
            item.instruction = result.text
            failed = result.text is None and result.reason.startswith("rewrite request failed")
            verdicts.append(self.verdict(result.text is not None, result.reason, result.scores, result.text,
                                         error=failed))
        return verdicts

    def check(self, item: ClipItem) -> Verdict:
        return self.check_many([item])[0]
