"""Per-language word splitters and stop words, and Gopher's quality rules on top of them.

Every quality filter (Gopher, C4, FineWeb; see `filters.py`) needs words, so each language
needs a word tokenizer. datatrove assigns one per language (`load_word_tokenizer`: spaCy blank
models, rule-based, nothing downloaded; Kiwi for Korean); two of its assignments are overridden
here, see `_TOKENIZER_OVERRIDES`. Gopher's stop-word rule is English-only upstream and
datatrove ships no other lists, so stop words come from spaCy's per-language lists, except for
the six languages measured before (their short lists of the most frequent function words).
"""

from __future__ import annotations

import importlib
import importlib.metadata  # noqa: F401  (datatrove 0.9 uses importlib.metadata without importing it)
import importlib.util
from functools import cache

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import (
    GopherRepetitionFilter,
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
)
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.word_tokenizers import (
    KiwiTokenizer,
    SpaCyTokenizer,
    WordTokenizer,
    load_word_tokenizer,
)

from llm_data.config import SUPPORTED_LANGUAGES, GopherConfig, GopherRepetitionConfig

__all__ = [
    "MultilingualGopherFilter",
    "MultilingualGopherRepetitionFilter",
    "OWN_STOP_WORDS",
    "PerLanguageFilter",
    "stop_words",
    "supported",
    "unsupported_reason",
    "word_tokenizer",
]

# Frequent function words; a real page in that language has at least two of them.
OWN_STOP_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("the", "be", "to", "of", "and", "that", "have", "with"),
    "de": ("der", "die", "das", "und", "ist", "nicht", "mit", "zu", "ein", "den"),
    "fr": ("le", "la", "les", "de", "et", "est", "un", "une", "des", "pour"),
    "es": ("el", "la", "los", "de", "y", "que", "en", "un", "una", "para"),
    "ja": ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し"),
    # zh-CN and zh-TW are both "zh" (py3langid has one Chinese class): 這 is 这 in Traditional.
    "zh": ("的", "了", "是", "在", "和", "有", "不", "这", "這", "我", "也"),
}
# datatrove's table maps "zh" and "ar" to spaCy's multi-language model ("xx"), which does not
# segment Chinese and knows no Arabic rules; their own spaCy languages do (zh: with jieba).
_TOKENIZER_OVERRIDES = {"zh": "zh", "ar": "ar"}
# Words (ja, zh) or Kiwi morphemes (ko) are 1-2 characters: Latin-script word lengths do not apply.
NO_WORD_LENGTH_RULE = frozenset({"ja", "ko", "zh"})
# Korean: datatrove's KiwiTokenizer, from the optional extra (its model wheel is large).
_EXTRA_MODULES = {"ko": ("kiwipiepy", "korean")}


def unsupported_reason(language: str) -> str | None:
    """Why `language` gets no quality filtering here, or None when it is supported."""
    if language not in SUPPORTED_LANGUAGES:
        return f"no word tokenizer and stop words for {language!r} in llm_data.quality"
    module, extra = _EXTRA_MODULES.get(language, (None, None))
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'llm-data[{extra}]')"
    return None


def supported(language: str) -> bool:
    return unsupported_reason(language) is None


@cache  # one per process: Kiwi loads a 100 MB model, spaCy a language's rules
def word_tokenizer(language: str) -> WordTokenizer:
    """datatrove's word tokenizer for `language` (see `_TOKENIZER_OVERRIDES`)."""
    if language == "ko":
        # datatrove's default Kiwi model ("sbg") is not in kiwipiepy-model 0.24, "cong" is.
        tokenizer = KiwiTokenizer(model_type="cong")
    elif language in _TOKENIZER_OVERRIDES:
        tokenizer = SpaCyTokenizer(_TOKENIZER_OVERRIDES[language])
    else:
        tokenizer = load_word_tokenizer(language)
    # Copies of a pipeline (one per task) share it: it keeps no per-document state, and once
    # loaded it holds modules (jieba) that deepcopy cannot copy.
    tokenizer.__deepcopy__ = lambda memo: tokenizer
    return tokenizer


@cache
def stop_words(language: str) -> frozenset[str]:
    """Our short list for en/de/fr/es/ja/zh; spaCy's stop-word list for the other languages."""
    if language in OWN_STOP_WORDS:
        return frozenset(OWN_STOP_WORDS[language])
    return frozenset(importlib.import_module(f"spacy.lang.{language}.stop_words").STOP_WORDS)


def _gopher_for(language: str, cfg: GopherConfig) -> GopherQualityFilter:
    no_length_rule = language in NO_WORD_LENGTH_RULE
    return GopherQualityFilter(
        min_doc_words=cfg.min_doc_words,
        max_doc_words=cfg.max_doc_words,
        min_avg_word_length=None if no_length_rule else cfg.min_avg_word_length,
        max_avg_word_length=None if no_length_rule else cfg.max_avg_word_length,
        max_symbol_word_ratio=cfg.max_symbol_word_ratio,
        max_bullet_lines_ratio=cfg.max_bullet_lines_ratio,
        max_ellipsis_lines_ratio=cfg.max_ellipsis_lines_ratio,
        max_non_alpha_words_ratio=cfg.max_non_alpha_words_ratio,
        min_stop_words=cfg.min_stop_words,
        stop_words=sorted(stop_words(language)),
        language=word_tokenizer(language),
    )


class PerLanguageFilter(BaseFilter):
    """Run one datatrove filter per language, picked by `metadata["language"]`.

    A document in a language without a filter is kept, counted in the stats as
    `unsupported_language` and `unsupported_<language>`, and listed in its
    `metadata["unfiltered"]` (dropping it would silently remove whole languages).
    Drop reasons are prefixed with `short_name` (`gopher_short_doc`, `c4_curly_bracket`).
    """

    short_name = "filter"

    def __init__(self, filters: dict[str, BaseFilter], exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.filters = filters
        for inner in filters.values():
            inner.stats = self.stats  # the inner filters' line counters land in this step's stats

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = doc.metadata.get("language", "")
        inner = self.filters.get(language)
        if inner is None:
            self.stat_update("unsupported_language", f"unsupported_{language or 'unlabelled'}")
            doc.metadata["unfiltered"] = [*doc.metadata.get("unfiltered", []), self.short_name]
            return True
        result = inner.filter(doc)
        if result is True or result is False:
            return result
        keep, reason = result
        prefix = f"{self.short_name}_"
        return keep, reason if reason.startswith(prefix) else prefix + reason


class MultilingualGopherFilter(PerLanguageFilter):
    """Gopher's rules with the tokenizer and stop words of each document's language."""

    name = "🥇 Gopher (per language)"
    short_name = "gopher"

    def __init__(
        self,
        config: GopherConfig,
        languages: tuple[str, ...] = SUPPORTED_LANGUAGES,
        exclusion_writer: DiskWriter | None = None,
    ):
        filters = {lang: _gopher_for(lang, config) for lang in languages if supported(lang)}
        super().__init__(filters, exclusion_writer)


class _RepetitionRules(GopherRepetitionFilter):
    """datatrove's GopherRepetitionFilter with a given word tokenizer.

    datatrove's `filter` splits words with `split_into_words(text, language)`, its own table of
    tokenizers (spaCy `xx` for zh and ar, Kiwi's missing default model for ko); this one is
    the same rules, in datatrove's order and with its helpers, on `word_tokenizer(language)`.
    A top n-gram's characters are its words joined by a space (datatrove's `get_n_grams`),
    except in ja/ko/zh, whose words the text does not separate: with spaces a 3-gram of
    Chinese words counts ~40% more characters than the text holds, so that any 3-gram of a
    short, unrepeated paragraph exceeded the 0.18 threshold.
    """

    def __init__(self, config: GopherRepetitionConfig, language: str):
        super().__init__(
            dup_line_frac=config.dup_line_frac,
            dup_para_frac=config.dup_para_frac,
            dup_line_char_frac=config.dup_line_char_frac,
            dup_para_char_frac=config.dup_para_char_frac,
            top_n_grams=tuple(config.top_ngram_char_frac.items()),
            dup_n_grams=tuple(config.dup_ngram_char_frac.items()),
        )
        self.tokenizer = word_tokenizer(language)
        self.joiner = "" if language in NO_WORD_LENGTH_RULE else " "

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text.strip():
            return True  # nothing repeats; emptiness is other rules' business
        for pieces, frac, char_frac, name in (
            (self.paragraph_exp.split(text.strip()), self.dup_para_frac,
             self.dup_para_char_frac, "para"),
            (self._line_splitter.split(text), self.dup_line_frac,
             self.dup_line_char_frac, "line"),
        ):  # fmt: skip
            duplicates, chars = find_duplicates(pieces)
            if frac and duplicates / len(pieces) > frac:
                return False, f"dup_{name}_frac"
            if char_frac and chars / len(text) > char_frac:
                return False, f"dup_{name}_char_frac"
        words = self.tokenizer.word_tokenize(text)
        for n, frac in self.top_n_grams:
            n_grams = [self.joiner.join(words[i : i + n]) for i in range(len(words) - n + 1)]
            if frac and n_grams and find_top_duplicate(n_grams) / len(text) > frac:
                return False, f"top_{n}_gram"
        for n, frac in self.dup_n_grams:
            if frac and find_all_duplicate(words, n) / len(text) > frac:
                return False, f"duplicated_{n}_n_grams"
        return True


class MultilingualGopherRepetitionFilter(PerLanguageFilter):
    """Gopher's repetition rules with the word tokenizer of each document's language.

    Reasons: `gopher_repetition_` + datatrove's (`dup_line_frac`, `dup_para_char_frac`,
    `top_2_gram`, `duplicated_5_n_grams`, ...).
    """

    name = "👯 Gopher repetition (per language)"
    short_name = "gopher_repetition"

    def __init__(
        self,
        config: GopherRepetitionConfig,
        languages: tuple[str, ...] = SUPPORTED_LANGUAGES,
        exclusion_writer: DiskWriter | None = None,
    ):
        filters = {lang: _RepetitionRules(config, lang) for lang in languages if supported(lang)}
        super().__init__(filters, exclusion_writer)
