"""Gopher quality rules per language: datatrove's GopherQualityFilter with the right tokenizer.

datatrove splits words with spaCy blank models (rule-based, nothing downloaded); Chinese needs
jieba and Japanese needs SudachiPy with its packaged dictionary. Gopher's stop-word rule is
English-only upstream, so each language gets its own short list of frequent function words.
"""

from __future__ import annotations

import importlib.metadata  # noqa: F401  (datatrove 0.9 uses importlib.metadata without importing it)

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.utils.word_tokenizers import SpaCyTokenizer

from llm_data.config import GopherConfig

__all__ = ["MultilingualGopherFilter", "STOP_WORDS"]

# Frequent function words; a real page in that language has at least two of them.
STOP_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("the", "be", "to", "of", "and", "that", "have", "with"),
    "de": ("der", "die", "das", "und", "ist", "nicht", "mit", "zu", "ein", "den"),
    "fr": ("le", "la", "les", "de", "et", "est", "un", "une", "des", "pour"),
    "es": ("el", "la", "los", "de", "y", "que", "en", "un", "una", "para"),
    "ja": ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し"),
    "zh": ("的", "了", "是", "在", "和", "有", "不", "这", "我", "也"),
}
# Words in these languages are 1-2 characters, so the Latin-script word-length bounds do not apply.
_NO_WORD_LENGTH_RULE = frozenset({"ja", "zh"})


def _gopher_for(language: str, cfg: GopherConfig) -> GopherQualityFilter:
    cjk = language in _NO_WORD_LENGTH_RULE
    return GopherQualityFilter(
        min_doc_words=cfg.min_doc_words,
        max_doc_words=cfg.max_doc_words,
        min_avg_word_length=None if cjk else cfg.min_avg_word_length,
        max_avg_word_length=None if cjk else cfg.max_avg_word_length,
        max_symbol_word_ratio=cfg.max_symbol_word_ratio,
        max_bullet_lines_ratio=cfg.max_bullet_lines_ratio,
        max_ellipsis_lines_ratio=cfg.max_ellipsis_lines_ratio,
        max_non_alpha_words_ratio=cfg.max_non_alpha_words_ratio,
        min_stop_words=cfg.min_stop_words,
        stop_words=list(STOP_WORDS[language]),
        # An explicit tokenizer: datatrove's table maps "zh" to spaCy's multi-language model,
        # which does not segment Chinese; SpaCyTokenizer("zh") uses jieba.
        language=SpaCyTokenizer(language),
    )


class MultilingualGopherFilter(BaseFilter):
    """Apply Gopher's rules with the tokenizer and stop words of `metadata["language"]`.

    Documents in a language without support (see `STOP_WORDS`) are kept and counted as
    `unsupported_language`, since dropping them would silently remove whole languages.
    """

    name = "🥇 Gopher (per language)"

    def __init__(self, config: GopherConfig, languages: tuple[str, ...] = tuple(STOP_WORDS)):
        super().__init__()
        self.filters = {lang: _gopher_for(lang, config) for lang in languages if lang in STOP_WORDS}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = doc.metadata.get("language", "en")
        gopher = self.filters.get(language)
        if gopher is None:
            self.stat_update("unsupported_language")
            return True
        return gopher.filter(doc)
