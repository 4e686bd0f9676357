"""Train a byte-level BPE tokenizer with Hugging Face `tokenizers`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from llm_tokenize.config import TokenizerConfig
from llm_tokenize.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

# Llama-3 / GPT-4 (cl100k) split regex with one change: numbers split into single digits
# (`\p{N}` instead of `\p{N}{1,3}`), as in Llama-1/2 and PaLM. With a small vocabulary (4k-32k)
# this keeps merges for words rather than for ~1000 digit groups, and gives every number the
# same digit-by-digit form, which helps arithmetic (e.g. Liu & Low 2023, "Goat").
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)


def build_bpe(config: TokenizerConfig) -> HFTokenizer:
    """An untrained byte-level BPE pipeline: NFC -> regex split -> bytes -> BPE -> bytes."""
    tok = HFTokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            # The regex already split the text; ByteLevel only maps bytes to printable symbols.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
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
    """Train a byte-level BPE tokenizer.

    Every byte is in the initial alphabet, so any UTF-8 text encodes (no unknown token) and
    ``decode(encode(x)) == NFC(x)``.

    Args:
        texts: Training documents (streamed once; limited by ``max_docs`` / ``max_bytes``).
        config: What to build; defaults to ``TokenizerConfig()``.

    Returns:
        The trained tokenizer, with EOS at id 0.

    Raises:
        ValueError: If no text was read.
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
        raise ValueError("train_tokenizer: no training text was given")
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
