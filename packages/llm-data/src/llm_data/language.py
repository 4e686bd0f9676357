"""Language identification with py3langid, whose model ships inside the package (works offline)."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

__all__ = ["LABEL_ALIASES", "LanguageIdFilter"]

# Enough text for a stable guess; classifying whole books is slow and adds nothing.
_MAX_CHARS = 10_000
# py3langid labels mapped to the codes used everywhere else (config, word tokenizers):
# - "no" (Norwegian macrolanguage; py3langid has no "nb"): written Norwegian is ~90% Bokmål,
#   and all 114 Norwegian nb-NO handbook pages come out "no" (nn is kept as "nn").
# - "wuu" (Wu) and "yue" (Cantonese): py3langid's label for some Mandarin handbook pages, in
#   Simplified (wuu, zh-CN) and Traditional (yue, zh-TW) script: both go to the "zh" bucket.
# - "ary" (Moroccan Arabic): py3langid's label for 40 of the 73 Arabic ar-MA handbook pages,
#   which are Modern Standard Arabic; dialect text goes to the "ar" bucket too.
# zh-CN and zh-TW both come out "zh": py3langid has one Chinese class for both scripts.
# (benchmarks/data/langid_accuracy.py measures all of this on the handbook pages.)
LABEL_ALIASES = {"no": "nb", "wuu": "zh", "yue": "zh", "ary": "ar"}


class LanguageIdFilter(BaseFilter):
    """Label each document with its language and drop those outside `languages`.

    Stores `metadata["language"]` (ISO 639-1, after `LABEL_ALIASES`) and
    `metadata["language_score"]` (probability of the top language). A document is kept when its
    language is in `languages` (or `languages` is empty) and its score is at least `min_score`.
    """

    name = "🌐 py3langid"
    _requires_dependencies = ["py3langid"]

    def __init__(
        self,
        languages: tuple[str, ...] = (),
        min_score: float = 0.5,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.languages = frozenset(languages)
        self.min_score = min_score
        self._identifier = None

    @property
    def identifier(self):
        # Loaded lazily so that the step pickles cheaply into worker processes.
        if self._identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return self._identifier

    def classify(self, text: str) -> tuple[str, float]:
        """(language code after `LABEL_ALIASES`, probability) of `text`."""
        language, score = self.identifier.classify(text[:_MAX_CHARS])
        return LABEL_ALIASES.get(language, language), float(score)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language, score = self.classify(doc.text)
        doc.metadata["language"] = language
        doc.metadata["language_score"] = round(float(score), 4)
        self.stat_update(f"lang_{language}")
        if self.languages and language not in self.languages:
            return False, "language"
        if score < self.min_score:
            return False, "language_score"
        return True
