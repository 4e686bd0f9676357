"""Exact deduplication: drop a document whose normalized text hash was already seen."""

from __future__ import annotations

import re
import unicodedata

import xxhash
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

__all__ = ["ExactDedupFilter", "normalized_text_hash"]

_SPACES = re.compile(r"\s+")


def normalized_text_hash(text: str) -> int:
    """128-bit xxh3 hash of `text` after NFKC, lower-casing and whitespace collapsing."""
    normalized = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
    return xxhash.xxh3_128_intdigest(normalized.encode("utf-8"))


class ExactDedupFilter(BaseFilter):
    """Keep the first document of each normalized text and drop later copies.

    The set of hashes lives in memory (16 bytes per document) and is per task: run with
    one task per source, or shard by a stable key upstream, for a global guarantee.
    """

    name = "🫂 Exact dedup"

    def __init__(self):
        super().__init__()
        self._seen: set[int] = set()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        digest = normalized_text_hash(doc.text)
        if digest in self._seen:
            return False, "exact_duplicate"
        self._seen.add(digest)
        return True
