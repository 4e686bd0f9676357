"""What Gopher's repetition rules remove from the sample corpus, per source, language and rule.

Every web page is extracted as the pipeline does, labelled by language ID (the sample run's
languages) and passed through the Gopher quality filter first (the repetition filter runs after
it in `llm_data.filters.quality_steps`); books and code, which the sample run does not filter
(`quality_filters: false`), are counted too, to show what the rules would do to them. Peer:
datatrove's stock `GopherRepetitionFilter` (its English word tokenizer on every page) on the
same documents, side by side.

    uv run python -m benchmarks.data.bench_repetition [--corpus DIR]

Writes `results/repetition.md`.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata  # noqa: F401  (datatrove 0.9 uses it without importing it)
import json
from collections import Counter
from pathlib import Path

from benchmarks.data import _pages

SAMPLE = _pages.ROOT / "data" / "sample"
LANGUAGES = ("en", "de", "fr", "es", "ja", "zh")  # the app's sample run


def _jsonl_docs(path: Path, source: str) -> list:
    from datatrove.data import Document

    docs = []
    for file in sorted(path.glob("*.jsonl.gz")):
        with gzip.open(file, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                record = json.loads(line)
                meta = {"source": source, "language": "en"}  # English books, English-ish code
                docs.append(
                    Document(text=record["text"], id=str(record.get("id", i)), metadata=meta)
                )
    return docs


def _web_docs(corpus: Path) -> tuple[list, int, int]:
    """Pages after language ID and the Gopher quality filter; also pages in and after langid."""
    from datatrove.data import Document

    from llm_data.config import GopherConfig
    from llm_data.language import LanguageIdFilter
    from llm_data.quality import MultilingualGopherFilter

    identifier, gopher = LanguageIdFilter(LANGUAGES, 0.5), MultilingualGopherFilter(GopherConfig())
    pages, labelled, kept = 0, 0, []
    for path in _pages.warc_files(corpus):
        for page in _pages.extracted_pages(path):
            if not page["text"].strip():
                continue
            pages += 1
            doc = Document(text=page["text"], id=page["id"], metadata={"source": "web"})
            if identifier.filter(doc) is not True:
                continue
            labelled += 1
            if gopher.filter(doc) is True:
                kept.append(doc)
    return kept, pages, labelled


def _removed(step, docs: list) -> tuple[Counter, Counter]:
    """Drop reasons, and drops per language, of `step.filter` over `docs`."""
    reasons, languages = Counter(), Counter()
    for doc in docs:
        result = step.filter(doc)
        if result is not True:
            reason = result[1] if isinstance(result, tuple) else "dropped"
            reasons[reason.removeprefix("gopher_repetition_")] += 1
            languages[doc.metadata.get("language", "?")] += 1
    return reasons, languages


def _fmt(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "-"


def main() -> None:
    from datatrove.pipeline.filters import GopherRepetitionFilter

    from llm_data.config import GopherRepetitionConfig
    from llm_data.quality import MultilingualGopherRepetitionFilter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SAMPLE / "web")
    args = parser.parse_args()
    web, pages, labelled = _web_docs(args.corpus)
    sources = {
        "web": web,
        "books": _jsonl_docs(SAMPLE / "books", "books"),
        "code": _jsonl_docs(SAMPLE / "code", "code"),
    }
    ours = MultilingualGopherRepetitionFilter(GopherRepetitionConfig(enabled=True), LANGUAGES)
    stock = GopherRepetitionFilter()
    lines = ["# Gopher repetition filter on the sample corpus\n"]
    lines += [f"- {k}: {v}" for k, v in _pages.provenance()]
    lines += [
        f"- web: {pages} non-empty extracted pages ({args.corpus}), {labelled} after language ID "
        f"({', '.join(LANGUAGES)}), {len(web)} after the Gopher quality filter: the input below",
        "- books and code: every document, language `en`; the sample run does not filter them",
        "",
        "| source | docs | removed (llm-data, per language) | share | by rule | by language "
        "| removed (datatrove stock, en tokenizer) | by rule |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for name, docs in sources.items():
        reasons, langs = _removed(ours, docs)
        stock_reasons, _ = _removed(stock, docs)
        n, k = len(docs), sum(reasons.values())
        lines.append(
            f"| {name} | {n} | {k} | {k / max(n, 1):.1%} | {_fmt(reasons)} | {_fmt(langs)} "
            f"| {sum(stock_reasons.values())} | {_fmt(stock_reasons)} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    _pages.RESULTS.mkdir(exist_ok=True)
    (_pages.RESULTS / "repetition.md").write_text(table)


if __name__ == "__main__":
    main()
