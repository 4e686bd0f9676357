"""Tokenizer statistics per group of documents (a language or a source).

bytes per token, characters per token, fertility (tokens per whitespace word, or per character
for languages written without spaces), share of the vocabulary used, byte-fallback share, and
the byte-for-byte round trip of every document.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Protocol

from tokenizers import normalizers

# Languages written without spaces between words: whitespace-word fertility means nothing there
# (a whole Japanese sentence is one "word"), so their fertility is tokens per character. Korean
# puts spaces between words (eojeol), so it stays per word.
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my", "bo"})
# Kept in a report row for each document whose round trip differs (the rest are counted).
MAX_FAILURES_LISTED = 5

Row = dict[str, Any]


class Encoder(Protocol):
    """Anything with ``encode_batch`` (an `llm_tokenize.Tokenizer`, for one)."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


def count_tokens(tokenizer: Encoder, texts: Iterable[str]) -> int:
    """Total number of tokens over ``texts`` (no special tokens added)."""
    return sum(len(ids) for ids in tokenizer.encode_batch(list(texts)))


def _ratio(numerator: int, tokens: int, what: str) -> float:
    if tokens == 0:
        raise ValueError(f"{what}: the texts encode to zero tokens")
    return numerator / tokens


def bytes_per_token(tokenizer: Encoder, texts: Sequence[str]) -> float:
    """UTF-8 bytes of ``texts`` divided by their number of tokens (higher = better compression)."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return _ratio(n_bytes, count_tokens(tokenizer, texts), "bytes_per_token")


def chars_per_token(tokenizer: Encoder, texts: Sequence[str]) -> float:
    """Unicode code points of ``texts`` divided by their number of tokens."""
    return _ratio(sum(len(t) for t in texts), count_tokens(tokenizer, texts), "chars_per_token")


def fertility(tokenizer: Encoder, texts: Sequence[str]) -> float:
    """Tokens per whitespace-separated word (``str.split()``); ~1.2-1.5 for English at 32k+.

    Meaningless for languages written without spaces (ja, zh, th, ...): see `is_unspaced`.
    """
    words = sum(len(t.split()) for t in texts)
    if words == 0:
        raise ValueError("fertility: the texts contain no whitespace-separated words")
    return count_tokens(tokenizer, texts) / words


def is_unspaced(language: str) -> bool:
    """True for languages without spaces between words; accepts "ja", "ja-JP", "zh_CN", ..."""
    return language.replace("_", "-").split("-")[0].lower() in UNSPACED_LANGUAGES


@cache
def _byte_of_symbol() -> dict[str, int]:
    """ByteLevel's printable symbol -> byte (GPT-2's `bytes_to_unicode`, inverted).

    Hand-written because `tokenizers` exposes the alphabet but not the byte each symbol stands for.
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table |= {chr(256 + i): b for i, b in enumerate(others)}
    return table


def partial_char_ids(hf_tokenizer) -> frozenset[int]:
    """Ids of tokens whose bytes are no whole UTF-8 characters: a piece of a character.

    A text encoded with them fell back to bytes where the vocabulary lacks its characters.
    """
    symbols = _byte_of_symbol()
    added = {t.content for t in hf_tokenizer.get_added_tokens_decoder().values()}
    partial = set()
    for token, token_id in hf_tokenizer.get_vocab(with_added_tokens=False).items():
        if token in added or any(c not in symbols for c in token):
            continue
        try:
            bytes(symbols[c] for c in token).decode("utf-8")
        except UnicodeDecodeError:
            partial.add(token_id)
    return frozenset(partial)


def _round_trip_target(hf_tokenizer):
    """What decode(encode(text)) must give back: the text, or its NFC form under an NFC
    normalizer (the only normalizer llm-tokenize trains with)."""
    normalizer = hf_tokenizer.normalizer
    if normalizer is None:
        return lambda text: text
    if isinstance(normalizer, normalizers.NFC):
        return lambda text: unicodedata.normalize("NFC", text)
    return normalizer.normalize_str


def group_stats(tokenizer, docs: Sequence[str], *, unspaced: bool = False, ids=None) -> Row:
    """Statistics of one group of documents under one `llm_tokenize.Tokenizer`.

    Returns:
        ``{"docs", "bytes", "chars", "words", "tokens", "bytes_per_token", "chars_per_token",
        "fertility", "fertility_unit" ("word" or "char"), "vocab_used" (share of the vocabulary
        seen), "byte_fallback" (share of tokens that are pieces of a character),
        "round_trip_failures", "nfc_changed" (documents the NFC normalizer changed; they round-trip
        to their NFC form), "failed_ids" (first few)}``.
    """
    encoded = tokenizer.encode_batch(list(docs))
    tokens = sum(len(ids_) for ids_ in encoded)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    chars = sum(len(d) for d in docs)
    words = sum(len(d.split()) for d in docs)
    seen = set().union(*encoded) if encoded else set()
    partial = partial_char_ids(tokenizer.hf)
    fallback = sum(1 for ids_ in encoded for i in ids_ if i in partial)
    failures, nfc_changed = _round_trip(tokenizer, docs, encoded, ids)
    unit_count = chars if unspaced else words
    return {
        "docs": len(docs),
        "bytes": n_bytes,
        "chars": chars,
        "words": words,
        "tokens": tokens,
        "bytes_per_token": n_bytes / tokens if tokens else float("nan"),
        "chars_per_token": chars / tokens if tokens else float("nan"),
        "fertility": tokens / unit_count if unit_count else None,
        "fertility_unit": "char" if unspaced else "word",
        "vocab_used": len(seen) / tokenizer.vocab_size,
        "byte_fallback": fallback / tokens if tokens else 0.0,
        "round_trip_failures": len(failures),
        "nfc_changed": nfc_changed,
        "failed_ids": failures[:MAX_FAILURES_LISTED],
    }


def _round_trip(tokenizer, docs, encoded, ids) -> tuple[list[str], int]:
    """Documents whose decoded bytes differ from the target bytes, and how many NFC changed."""
    target = _round_trip_target(tokenizer.hf)
    decoded = tokenizer.hf.decode_batch(encoded, skip_special_tokens=False)
    ids = ids if ids is not None else [str(i) for i in range(len(docs))]
    failures, nfc_changed = [], 0
    for doc_id, text, back in zip(ids, docs, decoded, strict=True):
        expected = target(text)
        nfc_changed += expected != text
        if back.encode("utf-8") != expected.encode("utf-8"):
            failures.append(doc_id)
    return failures, nfc_changed


def tokenizer_report(tokenizer, docs_by_group: dict[str, Sequence[str]]) -> dict[str, Row]:
    """`group_stats` per group; a group named for a language without spaces ("ja", "zh-CN")
    gets fertility per character, any other per whitespace word."""
    return {
        group: group_stats(tokenizer, docs, unspaced=is_unspaced(group))
        for group, docs in docs_by_group.items()
    }


def format_report(report: dict[str, Row]) -> str:
    """A plain-text table of a `tokenizer_report` (for logs)."""
    width = max([8, *(len(group) for group in report)])
    lines = [
        f"{'group':<{width}} {'docs':>6} {'tokens':>10} {'bytes/tok':>10} {'chars/tok':>10} "
        f"{'fertility':>14} {'vocab used':>10} {'fallback':>8} {'round trip':>10}"
    ]
    for group, row in report.items():
        fert = (
            "n/a" if row["fertility"] is None else f"{row['fertility']:.3f}/{row['fertility_unit']}"
        )
        trip = "ok" if row["round_trip_failures"] == 0 else f"{row['round_trip_failures']} FAIL"
        lines.append(
            f"{group:<{width}} {row['docs']:>6} {row['tokens']:>10} "
            f"{row['bytes_per_token']:>10.3f} {row['chars_per_token']:>10.3f} {fert:>14} "
            f"{row['vocab_used']:>10.1%} {row['byte_fallback']:>8.2%} {trip:>10}"
        )
    return "\n".join(lines)
