"""C4 and FineWeb quality rules per language, and the filter steps of one source.

datatrove's C4QualityFilter and FineWebQualityFilter are written for English: they split words
and sentences with the tokenizer of one `language`. Here each language gets its own instance
with its own tokenizer (`llm_data.quality.word_tokenizer`), dispatched on the document's label.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.c4_filters import C4QualityFilter
from datatrove.pipeline.filters.fineweb_quality_filter import FineWebQualityFilter
from datatrove.pipeline.writers import JsonlWriter
from datatrove.pipeline.writers.disk_base import DiskWriter

from llm_data.config import (
    SUPPORTED_LANGUAGES,
    C4Config,
    CurationConfig,
    FineWebConfig,
    SourceConfig,
)
from llm_data.language import LanguageIdFilter
from llm_data.pii import PIIMasker
from llm_data.quality import (
    MultilingualGopherFilter,
    MultilingualGopherRepetitionFilter,
    PerLanguageFilter,
    supported,
    word_tokenizer,
)

__all__ = ["MultilingualC4Filter", "MultilingualFineWebFilter", "classifier_cuts", "quality_steps"]

# C4 keeps only lines ending in . ? ! " ' (a fixed list in datatrove): ja/zh lines end in 。！？.
C4_NOT_APPLICABLE = frozenset({"ja", "zh"})


def _off(value: int) -> int:
    return value if value > 0 else -1  # datatrove's C4 spells "off" as -1


class MultilingualC4Filter(PerLanguageFilter):
    """C4's rules (line filtering, then page rules) with each language's sentence splitter."""

    name = "⛰ C4 (per language)"
    short_name = "c4"

    def __init__(
        self,
        config: C4Config,
        languages: tuple[str, ...] = SUPPORTED_LANGUAGES,
        exclusion_writer: DiskWriter | None = None,
    ):
        filters = {
            lang: C4QualityFilter(
                split_paragraph=True,
                remove_citations=config.remove_citations,
                filter_no_terminal_punct=config.filter_no_terminal_punct,
                min_num_sentences=_off(config.min_sentences),
                min_words_per_line=_off(config.min_words_per_line),
                max_word_length=_off(config.max_word_length),
                filter_lorem_ipsum=config.filter_lorem_ipsum,
                filter_javascript=config.filter_javascript,
                filter_curly_bracket=config.filter_curly_bracket,
                filter_policy=config.filter_policy,
                language=word_tokenizer(lang),
            )
            for lang in languages
            if supported(lang) and lang not in C4_NOT_APPLICABLE
        }
        super().__init__(filters, exclusion_writer)


class MultilingualFineWebFilter(PerLanguageFilter):
    """FineWeb's rules; words (for the newline-per-word rule) split per language."""

    name = "🍷 FineWeb (per language)"
    short_name = "fineweb"

    def __init__(
        self,
        config: FineWebConfig,
        languages: tuple[str, ...] = SUPPORTED_LANGUAGES,
        exclusion_writer: DiskWriter | None = None,
    ):
        filters = {
            lang: FineWebQualityFilter(
                line_punct_thr=config.line_punct_ratio,
                short_line_thr=config.short_line_ratio,
                short_line_length=config.short_line_length,
                char_duplicates_ratio=config.char_duplicates_ratio,
                new_line_ratio=config.new_line_ratio,
                language=word_tokenizer(lang),
            )
            for lang in languages
            if supported(lang)
        }
        super().__init__(filters, exclusion_writer)


def _excluded(excluded_dir: Path | None, step: str) -> DiskWriter | None:
    """A writer for the documents `step` drops: `excluded_dir/<step>/<source>/<rank>.jsonl.gz`
    (datatrove adds `metadata["filter_reason"]`)."""
    if excluded_dir is None:
        return None
    return JsonlWriter(str(excluded_dir / step), output_filename="${source}/${rank}.jsonl.gz")


def classifier_cuts(source: SourceConfig, config: CurationConfig) -> bool:
    """True when `source` is cut to a top fraction by the classifier (extra stages)."""
    cls = config.classifier
    return source.quality_filters and cls.enabled and cls.top_fraction is not None


def quality_steps(
    source: SourceConfig,
    config: CurationConfig,
    excluded_dir: Path | None = None,
    histogram_dir: Path | None = None,
) -> list[PipelineStep]:
    """The filter steps of one source, between reading/extraction and dedup:
    [language ID -> Gopher -> Gopher repetition -> C4 -> FineWeb -> quality classifier] (with
    `quality_filters`) -> [PII masking].

    Args:
        source: the source (its `quality_filters` switch).
        config: the run's configuration (languages, thresholds, on/off per filter).
        excluded_dir: where dropped documents are written, one folder per step; None: nowhere.
        histogram_dir: where the classifier writes its per-task score histograms (top
            fraction: `classifier_cuts`).
    """
    steps: list[PipelineStep] = []
    if source.quality_filters:
        languages = config.languages or SUPPORTED_LANGUAGES
        steps.append(
            LanguageIdFilter(
                config.languages,
                config.min_language_score,
                exclusion_writer=_excluded(excluded_dir, "language"),
            )
        )
        for enabled, step_class, sub_config, name in (
            (config.gopher.enabled, MultilingualGopherFilter, config.gopher, "gopher"),
            (
                config.gopher_repetition.enabled,
                MultilingualGopherRepetitionFilter,
                config.gopher_repetition,
                "gopher_repetition",
            ),
            (config.c4.enabled, MultilingualC4Filter, config.c4, "c4"),
            (config.fineweb.enabled, MultilingualFineWebFilter, config.fineweb, "fineweb"),
        ):
            if enabled:
                steps.append(step_class(sub_config, languages, _excluded(excluded_dir, name)))
        if config.classifier.enabled:
            from llm_data.classifier_filter import QualityClassifierFilter  # fastText: an extra

            histograms = histogram_dir if classifier_cuts(source, config) else None
            writer = _excluded(excluded_dir, "classifier")
            steps.append(QualityClassifierFilter(config.classifier, histograms, writer))
    if config.pii.enabled:
        steps.append(PIIMasker(config.pii))
    return steps
