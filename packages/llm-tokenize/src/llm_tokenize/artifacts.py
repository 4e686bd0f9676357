"""Train from a config's sources and write the two artifacts: tokenizer.json and its card.

The card (``tokenizer_card.json``) says what the tokenizer is and how it was made: vocabulary
size, special tokens and their ids, every setting, each training file with its size and SHA-256,
how many bytes of each source went into training, and the statistics per source and language.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import tokenizers

from llm_formats.atomic import sha256_file
from llm_formats.tokenizer import CARD_FILE, TOKENIZER_FILE, read_card, write_card
from llm_tokenize.config import TokenizerConfig
from llm_tokenize.corpus import (
    CorpusError,
    Document,
    SourceStats,
    load_source,
    sample_mixture,
    stats_sample,
)
from llm_tokenize.report import corpus_report
from llm_tokenize.tokenizer import Tokenizer
from llm_tokenize.training import _limited, train_tokenizer

logger = logging.getLogger(__name__)

# The card's statistics encode at most this much text per source and language (evenly spaced
# documents): encoding is ~2 MB/s per core, so a full multi-GB training corpus would take hours.
# `llm-tokenize stats` measures every document it is given.
CARD_STATS_BYTES = 4_000_000


def select_training_docs(
    config: TokenizerConfig, docs: dict[str, list[Document]], stats: dict[str, SourceStats]
) -> list[str]:
    """The training texts: the mixture by proportion, or every source once in order (both within
    ``max_docs`` / ``max_bytes``); fills each source's ``train_docs`` and ``train_bytes``."""
    if config.sources and config.sources[0].proportion is not None:
        total = config.max_bytes or sum(s.bytes for s in stats.values())
        proportions = {s.name: s.proportion for s in config.sources}
        chosen = sample_mixture(docs, proportions, total)
        if config.max_docs is not None:
            logger.warning("max_docs is ignored with proportions: max_bytes sizes the mixture")
        texts = []
        for name, selected in chosen.items():
            stats[name].train_docs = len(selected)
            stats[name].train_bytes = sum(len(d.text.encode("utf-8")) for d in selected)
            texts += [d.text for d in selected]
        return texts
    ordered = [d for source in docs.values() for d in source]
    counts = {"docs": 0, "bytes": 0}
    texts = list(_limited((d.text for d in ordered), config, counts))
    for doc, text in zip(ordered, texts, strict=False):
        stats[doc.source].train_docs += 1
        stats[doc.source].train_bytes += len(text.encode("utf-8"))
    return texts


def train_from_config(
    config: TokenizerConfig, out_dir: str | Path, *, stats_bytes: int = CARD_STATS_BYTES
) -> tuple[Tokenizer, dict]:
    """Read ``config.sources``, train, write ``tokenizer.json`` and ``tokenizer_card.json``.

    The card's statistics cover up to ``stats_bytes`` of text per source and per language.

    Returns:
        The tokenizer and the card (as written).

    Raises:
        CorpusError: No sources, a path that matches nothing, an unreadable file or line (named),
            or no text at all.
    """
    if not config.sources:
        raise CorpusError("TokenizerConfig.sources: empty; name at least one source of text")
    docs: dict[str, list[Document]] = {}
    stats: dict[str, SourceStats] = {}
    for source in config.sources:
        docs[source.name], stats[source.name] = load_source(source)
    if not any(s.bytes for s in stats.values()):
        files = [f["path"] for s in stats.values() for f in s.files]
        raise CorpusError(f"empty corpus: no text in {len(files)} file(s): {files[:5]}")
    texts = select_training_docs(config, docs, stats)
    start = time.perf_counter()
    tok = train_tokenizer(texts, config)
    seconds = time.perf_counter() - start
    out = Path(out_dir)
    tok.save(out / TOKENIZER_FILE)
    all_docs = [d for source in docs.values() for d in source]
    sample = stats_sample(all_docs, stats_bytes)
    card = make_card(tok, config, stats, seconds, corpus_report(tok, sample))
    card["tokenizer_sha256"] = sha256_file(out / TOKENIZER_FILE)
    write_card(card, out / CARD_FILE)
    return tok, read_card(out / TOKENIZER_FILE)  # as written: JSON types (lists, not tuples)


def make_card(
    tok: Tokenizer,
    config: TokenizerConfig,
    stats: dict[str, SourceStats],
    seconds: float,
    statistics: dict[str, Any],
) -> dict[str, Any]:
    specials = {
        role: {"token": token, "id": tok.token_id(token)}
        for role, token in config.special_token_roles.items()
    }
    return {
        "vocab_size": tok.vocab_size,
        "requested_vocab_size": config.vocab_size,
        "special_tokens": specials,
        "all_special_tokens": list(config.special_tokens),
        "settings": dataclasses.asdict(config),
        "tokenizers_version": tokenizers.__version__,
        "training": {
            "seconds": round(seconds, 3),
            "docs": sum(s.train_docs for s in stats.values()),
            "bytes": sum(s.train_bytes for s in stats.values()),
            "sources": {name: dataclasses.asdict(s) for name, s in stats.items()},
        },
        "statistics": statistics,
    }
