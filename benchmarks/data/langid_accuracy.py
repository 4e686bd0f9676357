"""Language-ID accuracy per language on the handbook pages (their language is in the file name).

Pages are extracted with Trafilatura as the curation pipeline does, then labelled by
`llm_data.language.LanguageIdFilter` (py3langid, with llm-data's label aliases: `no` -> `nb`,
`wuu`/`yue` -> `zh`, `ary` -> `ar`). A page counts as right when its label is the file's
language (`zh` for both zh-CN and zh-TW: py3langid has one Chinese class). The handbook's
translators left many pages (mostly) in English, where `en` is right for the text, so an
independent check without a model (`_english_by_check`: script for ar/el/fa/ja/ko/zh, English vs
the language's stop words otherwise) sorts the pages into English and "in the file's language",
and the accuracy is reported on the latter too.

    uv run python -m benchmarks.data.langid_accuracy [--corpus DIR]

Writes `results/langid_accuracy.md` and `.json`.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from benchmarks.data import _pages

_NON_LATIN = frozenset({"ar", "el", "fa", "ja", "ko", "zh"})


def _english_by_check(text: str, language: str) -> bool:
    """An independent check (no language-ID model) of whether a page of the `language` file
    is in English: for non-Latin scripts, at least 80% of its letters are ASCII; otherwise it
    has a larger share of English stop words than of `language` stop words (spaCy's lists)."""
    import importlib

    if language == "en":
        return True
    if language in _NON_LATIN:
        letters = [c for c in text if c.isalpha()]
        return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= 0.8
    english = importlib.import_module("spacy.lang.en.stop_words").STOP_WORDS
    own = importlib.import_module(f"spacy.lang.{language}.stop_words").STOP_WORDS
    words = text.lower().split()
    return sum(w in english for w in words) > sum(w in own for w in words)


def evaluate(corpus: Path) -> list[dict]:
    from tqdm import tqdm

    from llm_data.language import LABEL_ALIASES, LanguageIdFilter

    identifier = LanguageIdFilter()
    rows = []
    for path in tqdm(_pages.warc_files(corpus), desc="files", unit="file"):
        tag = _pages.file_tag(path)
        expected = tag.split("-")[0]
        labels = collections.Counter()
        raw = collections.Counter()
        scores = []
        truth_english = truth_own = right_on_own = en_on_own = 0
        for page in _pages.extracted_pages(path):
            if not page["text"].strip():
                continue
            label, score = identifier.identifier.classify(page["text"][:10_000])
            language = LABEL_ALIASES.get(label, label)  # as LanguageIdFilter.classify does
            raw[label] += 1
            labels[language] += 1
            scores.append(score)
            if expected != "en" and _english_by_check(page["text"], expected):
                truth_english += 1
            else:
                truth_own += 1
                right_on_own += language == expected
                en_on_own += language == "en"
        pages = sum(labels.values())
        right = labels[expected]
        english = labels["en"] if expected != "en" else 0
        rows.append(
            {
                "file": tag,
                "expected": expected,
                "pages": pages,
                "right": right,
                "accuracy": right / pages if pages else 0.0,
                "labelled_en": english,
                "english_by_check": truth_english,
                "in_its_language_by_check": truth_own,
                "accuracy_in_its_language": right_on_own / truth_own if truth_own else None,
                "labelled_en_in_its_language": en_on_own,
                "mean_score": sum(scores) / len(scores) if scores else 0.0,
                "other_labels": dict(
                    (k, v) for k, v in labels.most_common() if k not in (expected, "en")
                ),
                "raw_labels": dict(raw.most_common(4)),
            }
        )
    return rows


def render(rows: list[dict], corpus: Path) -> str:
    lines = [f"- {k}: {v}" for k, v in _pages.provenance()]
    lines += [
        f"- corpus: {corpus.name}/ ({len(rows)} files, Trafilatura-extracted, "
        "empty pages left out)",
        "",
        "| file | label | pages | labelled as file | labelled `en` | English by check | "
        "accuracy on pages in the file's language | of those labelled `en` | mean score | "
        "other labels | py3langid's raw labels |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        other = ", ".join(f"{k} {v}" for k, v in r["other_labels"].items()) or "-"
        raw = ", ".join(f"{k} {v}" for k, v in r["raw_labels"].items())
        own = r["accuracy_in_its_language"]
        lines.append(
            f"| {r['file']} | {r['expected']} | {r['pages']} | {r['right']} | "
            f"{r['labelled_en']} | {r['english_by_check']} | "
            f"{'-' if own is None else f'{own:.0%}'} ({r['in_its_language_by_check']} pages) | "
            f"{r['labelled_en_in_its_language'] if r['expected'] != 'en' else '-'} | "
            f"{r['mean_score']:.2f} | {other} | {raw} |"
        )
    total = sum(r["pages"] for r in rows)
    right = sum(r["right"] for r in rows)
    own = sum(r["in_its_language_by_check"] for r in rows if r["expected"] != "en")
    own_right = sum(
        r["accuracy_in_its_language"] * r["in_its_language_by_check"]
        for r in rows
        if r["expected"] != "en" and r["in_its_language_by_check"]
    )
    lines.append(
        f"\nAll files: {right}/{total} pages ({right / total:.1%}) labelled as their file. "
        f"Non-English files: {own_right:.0f}/{own} pages ({own_right / own:.1%}) that the check "
        "puts in the file's language are labelled so."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=_pages.DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=_pages.RESULTS)
    args = parser.parse_args()
    rows = evaluate(args.corpus)
    table = render(rows, args.corpus)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    _pages.write_atomic(args.out / "langid_accuracy.md", "# Language ID accuracy\n\n" + table)
    _pages.write_atomic(args.out / "langid_accuracy.json", json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
