"""Language-ID accuracy per language on the handbook pages (their language is in the file name).

Pages are extracted with Trafilatura as the curation pipeline does, then labelled by
`llm_data.language.LanguageIdFilter` (py3langid, with llm-data's label aliases: `no` -> `nb`,
`wuu`/`yue` -> `zh`, `ary` -> `ar`). A page counts as right when its label is the file's
language (`zh` for both zh-CN and zh-TW: py3langid has one Chinese class). Pages labelled `en`
are counted apart: the handbook's translators left some pages (mostly) in English, where `en` is
right for the text; an independent check counts how many of those have >= 30% English stop words.

    uv run python benchmarks/data/langid_accuracy.py [--corpus DIR]

Writes `results/langid_accuracy.md` and `.json`.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pages  # noqa: E402


def _looks_english(text: str) -> bool:
    """An independent check of an `en` label: at least 30% of the words are English stop words
    (spaCy's list; English prose has 40-50%, other languages a few percent)."""
    from spacy.lang.en.stop_words import STOP_WORDS

    words = text.lower().split()
    return bool(words) and sum(w in STOP_WORDS for w in words) / len(words) >= 0.3


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
        english_checked = 0
        for page in _pages.extracted_pages(path):
            if not page["text"].strip():
                continue
            label, score = identifier.identifier.classify(page["text"][:10_000])
            language = LABEL_ALIASES.get(label, label)  # as LanguageIdFilter.classify does
            english_checked += language == "en" and _looks_english(page["text"])
            raw[label] += 1
            labels[language] += 1
            scores.append(score)
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
                "labelled_en_with_english_stop_words": english_checked if expected != "en" else 0,
                "accuracy_non_en_pages": right / (pages - english) if pages > english else 0.0,
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
        "| file | label | pages | right | accuracy | labelled `en` (English by stop words) | "
        "accuracy without `en` pages | mean score | other labels | py3langid's raw labels |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        other = ", ".join(f"{k} {v}" for k, v in r["other_labels"].items()) or "-"
        raw = ", ".join(f"{k} {v}" for k, v in r["raw_labels"].items())
        lines.append(
            f"| {r['file']} | {r['expected']} | {r['pages']} | {r['right']} | "
            f"{r['accuracy']:.0%} | "
            f"{r['labelled_en']} ({r['labelled_en_with_english_stop_words']}) | "
            f"{r['accuracy_non_en_pages']:.0%} | "
            f"{r['mean_score']:.2f} | {other} | {raw} |"
        )
    total = sum(r["pages"] for r in rows)
    right = sum(r["right"] for r in rows)
    lines.append(
        f"\nAll files: {right}/{total} pages ({right / total:.1%}) labelled as their file."
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
