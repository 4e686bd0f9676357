"""Train a byte-level BPE tokenizer with Hugging Face `tokenizers`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from llm_tokenize.config import TokenizerConfig
from llm_tokenize.pretokenizer import build_normalizer, build_pre_tokenizer
from llm_tokenize.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


def build_bpe(config: TokenizerConfig) -> HFTokenizer:
    """An untrained byte-level BPE pipeline: [NFC] -> regex split -> bytes -> BPE -> bytes."""
    tok = HFTokenizer(models.BPE())
    normalizer = build_normalizer(config)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = build_pre_tokenizer(config)
    tok.decoder = decoders.ByteLevel()
    return tok


def _limited(
    texts: Iterable[str], config: TokenizerConfig, counts: dict[str, int]
) -> Iterator[str]:
    """Yield texts until ``max_docs`` or ``max_bytes`` is reached, counting what was read."""
    for text in texts:
        if config.max_docs is not None and counts["docs"] >= config.max_docs:
            return
        n_bytes = len(text.encode("utf-8"))
        if config.max_bytes is not None and counts["bytes"] + n_bytes > config.max_bytes:
            if counts["docs"] == 0:  # never train on nothing: keep a prefix of the first text
                text = text.encode("utf-8")[: config.max_bytes].decode("utf-8", errors="ignore")
                counts["docs"], counts["bytes"] = 1, len(text.encode("utf-8"))
                yield text
            return
        counts["docs"] += 1
        counts["bytes"] += n_bytes
        yield text


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig | None = None) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (``config.sources`` is not read here).

    Every byte is in the initial alphabet, so any UTF-8 text encodes (no unknown token) and
    ``decode(encode(x)) == x`` (``NFC(x)`` when ``config.nfc``). Training is deterministic: the
    same texts and config give a byte-identical tokenizer.json.

    Args:
        texts: Training documents (streamed once; limited by ``max_docs`` / ``max_bytes``).
        config: What to build; defaults to ``TokenizerConfig()``.

    Returns:
        The trained tokenizer, with EOS at id 0.

    Raises:
        ValueError: If no text was read, or the texts are all empty.
    """
    config = config or TokenizerConfig()
    tok = build_bpe(config)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(config.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=config.show_progress,
    )
    counts = {"docs": 0, "bytes": 0}
    start = time.perf_counter()
    tok.train_from_iterator(_limited(texts, config, counts), trainer=trainer)
    if counts["docs"] == 0:
        raise ValueError("train_tokenizer: no training text was given (the corpus is empty)")
    if counts["bytes"] == 0:
        raise ValueError(f"train_tokenizer: all {counts['docs']} training documents are empty")
    result = Tokenizer(tok, config.eos_token)
    logger.info(
        "trained BPE on %d docs / %.1f MB in %.1f s: vocab_size=%d",
        counts["docs"],
        counts["bytes"] / 1e6,
        time.perf_counter() - start,
        result.vocab_size,
    )
    if result.vocab_size < config.vocab_size:
        logger.warning(
            "vocab_size is %d, below the requested %d: too little text (or min_frequency=%d "
            "too high) for more merges",
            result.vocab_size,
            config.vocab_size,
            config.min_frequency,
        )
    return result
