"""A T5 tokenizer trained offline: Unigram model, Metaspace pre-tokenizer, T5's special tokens.

CogVideoX reads prompts with T5-v1.1-xxl's SentencePiece tokenizer, which cannot be downloaded everywhere. The
tiny preset trains a small tokenizer of the same kind with the ``tokenizers`` library on a built-in corpus of
ophthalmic-surgery sentences (``ophora/configs/corpus/ophthalmic.txt``) and wraps it in ``T5TokenizerFast``,
so the pipeline code is the same at both scales. Token ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, like T5.
"""
from __future__ import annotations

from importlib import resources
from typing import Iterable

__all__ = ["builtin_corpus", "train_t5_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def builtin_corpus() -> list[str]:
    """The lines of the shipped ophthalmic-surgery corpus (every letter, digit and common punctuation occurs)."""
    text = (resources.files("ophora.configs") / "corpus" / "ophthalmic.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def train_t5_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a Unigram tokenizer on ``corpus`` (at most ``vocab_size`` pieces) and return a ``T5TokenizerFast``.

    Encoding appends ``</s>`` like T5; padding uses ``<pad>`` (id 0).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token="<unk>")
    backend.train_from_iterator(list(corpus), trainer)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0)
