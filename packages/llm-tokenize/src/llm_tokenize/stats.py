"""Tokenizer statistics: bytes per token, characters per token, fertility, per language."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

# Languages written without spaces between words: whitespace-word fertility means nothing there
# (a whole Japanese sentence is one "word"), so the report gives characters per token instead.
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my", "bo"})


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

    Meaningless for languages written without spaces (ja, zh, th, ...): use `chars_per_token`.
    """
    words = sum(len(t.split()) for t in texts)
    if words == 0:
        raise ValueError("fertility: the texts contain no whitespace-separated words")
    return count_tokens(tokenizer, texts) / words


def is_unspaced(language: str) -> bool:
    """True for languages without spaces between words; accepts "ja", "ja-JP", "zh_CN", ..."""
    return language.replace("_", "-").split("-")[0].lower() in UNSPACED_LANGUAGES


def tokenizer_report(
    tokenizer: Encoder, docs_by_language: dict[str, list[str]]
) -> dict[str, dict[str, float | int | None]]:
    """Compression statistics per language.

    Args:
        tokenizer: Object with ``encode_batch``.
        docs_by_language: Language code (e.g. "en", "ja-JP") -> documents.

    Returns:
        ``{language: {"docs", "bytes", "chars", "tokens", "words", "bytes_per_token",
        "chars_per_token", "fertility"}}``; ``words`` and ``fertility`` are None for languages
        written without spaces (see `UNSPACED_LANGUAGES`).
    """
    report: dict[str, dict[str, float | int | None]] = {}
    for language, docs in docs_by_language.items():
        tokens = count_tokens(tokenizer, docs)
        n_bytes = sum(len(d.encode("utf-8")) for d in docs)
        chars = sum(len(d) for d in docs)
        words = None if is_unspaced(language) else sum(len(d.split()) for d in docs)
        report[language] = {
            "docs": len(docs),
            "bytes": n_bytes,
            "chars": chars,
            "tokens": tokens,
            "words": words,
            "bytes_per_token": n_bytes / tokens if tokens else float("nan"),
            "chars_per_token": chars / tokens if tokens else float("nan"),
            "fertility": tokens / words if words else None,
        }
    return report


def format_report(report: dict[str, dict[str, float | int | None]]) -> str:
    """A plain-text table of a `tokenizer_report` (for CLIs and logs)."""
    width = max([8, *(len(lang) for lang in report)])
    lines = [
        f"{'language':<{width}} {'docs':>6} {'tokens':>10} {'bytes/tok':>10} "
        f"{'chars/tok':>10} {'fertility':>10}"
    ]
    for lang, row in report.items():
        fert = "n/a" if row["fertility"] is None else f"{row['fertility']:.3f}"
        lines.append(
            f"{lang:<{width}} {row['docs']:>6} {row['tokens']:>10} {row['bytes_per_token']:>10.3f} "
            f"{row['chars_per_token']:>10.3f} {fert:>10}"
        )
    return "\n".join(lines)
