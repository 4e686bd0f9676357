from __future__ import annotations

import re

import pytest
from datatrove.data import Document

from llm_data.language import LanguageIdFilter

_TAGS = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.S)


def _pages(path, limit):
    """Visible text of the first `limit` pages (a crude tag strip: fast, no extractor)."""
    from warcio.archiveiterator import ArchiveIterator

    texts = []
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response":
                html = record.content_stream().read().decode("utf-8")
                texts.append(" ".join(_TAGS.sub(" ", html).split()))
            if len(texts) == limit:
                break
    return texts


@pytest.mark.parametrize(("language", "min_accuracy"), [("en", 1.0), ("de", 0.8), ("fr", 0.6)])
def test_labels_handbook_pages(helpers, language, min_accuracy):
    path = next(helpers.SAMPLE.glob(f"web/handbook-{language}-*.warc.gz"))
    step = LanguageIdFilter(languages=("en", "de", "fr"))
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(_pages(path, 40))]
    for doc in docs:
        step.filter(doc)
    labels = [d.metadata["language"] for d in docs]
    accuracy = labels.count(language) / len(labels)
    # The handbook's translations leave some sections in English (the fr pages most): such a
    # page is labelled "en", which is right for its text, but counts as a miss here.
    assert accuracy >= min_accuracy, labels
    assert set(labels) <= {language, "en"}, labels
    assert all(0.0 <= d.metadata["language_score"] <= 1.0 for d in docs)


def test_filter_drops_other_languages_and_low_scores():
    step = LanguageIdFilter(languages=("de",), min_score=0.9)
    en = Document(text="This is an English sentence about computers and networks.", id="en")
    assert step.filter(en) == (False, "language")
    assert en.metadata["language"] == "en"
    de = Document(text="Dies ist ein deutscher Satz über Rechner und Netzwerke.", id="de")
    assert step.filter(de) is True
    assert de.metadata["language_score"] > 0.9
