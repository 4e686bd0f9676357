"""Language identification with py3langid, whose model ships inside the package (works offline)."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

__all__ = ["LanguageIdFilter"]

# Enough text for a stable guess; classifying whole books is slow and adds nothing.
_MAX_CHARS = 10_000


class LanguageIdFilter(BaseFilter):
    """Label each document with its language and drop those outside `languages`.

    Stores `metadata["language"]` (ISO 639-1) and `metadata["language_score"]` (probability
    of the top language). A document is kept when its language is in `languages` (or
    `languages` is empty) and its score is at least `min_score`.
    """

    name = "🌐 py3langid"
    _requires_dependencies = ["py3langid"]

    def __init__(self, languages: tuple[str, ...] = (), min_score: float = 0.5):
        super().__init__()
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

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language, score = self.identifier.classify(doc.text[:_MAX_CHARS])
        doc.metadata["language"] = language
        doc.metadata["language_score"] = round(float(score), 4)
        self.stat_update(f"lang_{language}")
        if self.languages and language not in self.languages:
            return False, "language"
        if score < self.min_score:
            return False, "language_score"
        return True
