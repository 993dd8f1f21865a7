"""A T5 tokenizer trained offline: Unigram model, Metaspace pre-tokenizer, T5's special tokens.

CogVideoX reads prompts with T5-v1.1-xxl's SentencePiece tokenizer, which cannot be downloaded everywhere. The
tiny preset trains a small tokenizer of the same kind with the ``tokenizers`` library on a built-in corpus of
ophthalmic-surgery sentences (``ophora/configs/corpus/ophthalmic.txt``) and wraps it in ``T5TokenizerFast``,
so the pipeline code is the same at both scales. Token ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, like T5.
"""
from __future__ import annotations

from importlib import resources
from typing import Iterable

__all__ = ["builtin_corpus", "unigram_pieces", "train_t5_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def builtin_corpus() -> list[str]:
    """The lines of the shipped ophthalmic-surgery corpus (every letter, digit and common punctuation occurs)."""
    text = (resources.files("ophora.configs") / "corpus" / "ophthalmic.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def unigram_pieces(corpus: Iterable[str], vocab_size: int) -> list[tuple[str, float]]:
    """The Unigram vocabulary, computed deterministically: T5's special tokens, the word boundary ``▁`` and every
    character of the (NFKC-normalised) corpus, so any corpus text encodes without ``<unk>``, then the most frequent
    whole words (``▁word``; ties broken alphabetically) up to ``vocab_size`` pieces. Each piece scores the log of
    its relative frequency, so Viterbi segmentation prefers whole words over their characters.

    (``tokenizers``' UnigramTrainer was used before; its scores differed by up to 1e-3 between processes, so two
    fresh tiny models could tokenize a prompt differently.)
    """
    import collections
    import math

    from tokenizers import normalizers

    normalize = normalizers.NFKC().normalize_str
    lines = [normalize(line) for line in corpus]
    chars = collections.Counter(c for line in lines for c in line if not c.isspace())
    words = collections.Counter("\u2581" + w for line in lines for w in line.split())
    chars["\u2581"] = sum(words.values())
    base = sorted(chars, key=lambda c: (-chars[c], c))
    if len(SPECIAL_TOKENS) + len(base) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is too small: the corpus alone has {len(base) - 1} characters "
                         f"(+ the word boundary and {len(SPECIAL_TOKENS)} special tokens)")
    room = vocab_size - len(SPECIAL_TOKENS) - len(base)
    frequent = sorted(words, key=lambda w: (-words[w], w))[:room]
    total = sum(chars.values()) + sum(words[w] for w in frequent)
    pieces = [(token, 0.0) for token in SPECIAL_TOKENS]
    pieces += [(c, math.log(chars[c] / total)) for c in base]
    pieces += [(w, math.log(words[w] / total)) for w in frequent]
    return pieces


def train_t5_tokenizer(corpus: Iterable[str], vocab_size: int):
    """A Unigram tokenizer for ``corpus`` (at most ``vocab_size`` pieces, see :func:`unigram_pieces`) wrapped in
    ``T5TokenizerFast``; the same corpus gives the same tokenizer in every process.

    Encoding appends ``</s>`` like T5; padding uses ``<pad>`` (id 0).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    backend = Tokenizer(models.Unigram(unigram_pieces(corpus, vocab_size), unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0)
