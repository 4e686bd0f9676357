"""What substring dedup cuts from the sample corpus, beside datatrove's own sentence dedup.

Input: the sample run's documents just before substring dedup: web pages after language ID and
the Gopher quality filter (as in `bench_repetition`), the books and the code, through exact,
URL and MinHash dedup (one `run_curation`). Then, on exactly those documents:

- llm-data: `run_curation` with `dedup.substring` only (min span 50 words, the default);
- datatrove: `SentenceDedupSignature` -> `SentenceFindDedups` -> `SentenceDedupFilter` with
  one-sentence units and `min_words_to_remove_span=50` (the closest setting to ours), its
  English tokenizer on every document, in this process.

    uv run python -m benchmarks.data.bench_substring

Writes `results/substring.md`.
"""

from __future__ import annotations

import gzip
import importlib.metadata  # noqa: F401  (datatrove 0.9 uses it without importing it)
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.data import _pages
from benchmarks.data.bench_repetition import SAMPLE, _web_docs

MIN_WORDS = 50


def _write(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)


def _read(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            docs += [json.loads(line) for line in f]
    return docs


def _curate(sources: dict[str, Path], out: Path, **dedup) -> dict:
    from llm_data import CurationConfig, DedupConfig, SourceConfig, run_curation
    from llm_data.config import PIIConfig

    config = CurationConfig(
        sources=[SourceConfig(name=n, path=str(p), format="jsonl", quality_filters=False)
                 for n, p in sources.items()],
        output_dir=str(out), pii=PIIConfig(enabled=False), dedup=DedupConfig(**dedup),
        overwrite=True, workers=2,
    )  # fmt: skip
    return run_curation(config)


def _datatrove(docs: list[dict], work: Path) -> tuple[Counter, Counter, float]:
    """Documents changed and sentences removed per source by datatrove's sentence dedup."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.sentence_dedup import (
        SentDedupConfig,
        SentenceDedupFilter,
        SentenceDedupSignature,
        SentenceFindDedups,
    )

    config = SentDedupConfig(n_sentences=1, min_words_to_remove_span=MIN_WORDS, min_doc_words=10,
                             min_num_sentences=0)  # fmt: skip

    def documents():
        for d in docs:
            yield Document(text=d["text"], id=d["id"], metadata=dict(d["metadata"]))

    start = time.perf_counter()
    SentenceDedupSignature(str(work / "sigs"), config=config).run(documents())
    SentenceFindDedups(str(work / "sigs"), str(work / "dups"), config=config).run()
    changed, chars = Counter(), Counter()
    originals = {d["id"]: d["text"] for d in docs}
    kept = set()
    for doc in SentenceDedupFilter(str(work / "dups"), config=config).run(documents()):
        kept.add(doc.id)
        if doc.text != originals[doc.id]:
            changed[doc.metadata["source"]] += 1
            chars[doc.metadata["source"]] += len(originals[doc.id]) - len(doc.text)
    for d in docs:
        if d["id"] not in kept:
            changed[d["metadata"]["source"] + " (dropped)"] += 1
    return changed, chars, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        web, _, _ = _web_docs(SAMPLE / "web")
        rows = [{"id": d.id, "text": d.text, "language": d.metadata["language"]} for d in web]
        _write(tmp / "in" / "web" / "web.jsonl.gz", rows)
        sources = {"web": tmp / "in" / "web", "books": SAMPLE / "books", "code": SAMPLE / "code"}
        _curate(sources, tmp / "deduped", substring=False)
        before = {n: _read(tmp / "deduped" / n) for n in sources}
        for name, docs in before.items():
            _write(tmp / "before" / name / "docs.jsonl.gz", docs)
        start = time.perf_counter()
        stats = _curate({n: tmp / "before" / n for n in sources}, tmp / "ours", exact=False,
                        url=False, minhash=False, substring=True)  # fmt: skip
        ours_s = time.perf_counter() - start
        cuts = _read(tmp / "ours" / "excluded" / "substring" / "cuts")
        all_docs = [d for docs in before.values() for d in docs]
        theirs, theirs_chars, theirs_s = _datatrove(all_docs, tmp / "datatrove")
    lines = ["# Substring dedup on the sample corpus\n"]
    lines += [f"- {k}: {v}" for k, v in _pages.provenance()]
    lines += [
        "- input: the sample run's documents after language ID, Gopher (web), exact, URL and "
        "MinHash dedup; spans of at least 50 words",
        f"- wall time: llm-data {ours_s:.0f} s (`run_curation`, 3 stages, 2 workers); "
        f"datatrove {theirs_s:.0f} s (3 steps in this process)",
        "",
        "| source | docs | llm-data: docs cut | spans cut | chars cut | share of chars | docs "
        "dropped | datatrove: docs changed | chars removed | docs dropped |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, docs in before.items():
        row = stats[name]["stages"][-1]
        counted, total = row.get("counted", {}), sum(len(d["text"]) for d in docs)
        lines.append(
            f"| {name} | {len(docs)} | {counted.get('documents_cut', 0)} | "
            f"{counted.get('spans_cut', 0)} | {counted.get('chars_cut', 0)} | "
            f"{counted.get('chars_cut', 0) / max(total, 1):.2%} | {row['removed']} | "
            f"{theirs[name]} | {theirs_chars[name]} | {theirs[name + ' (dropped)']} |"
        )
    language = {d["id"]: d["metadata"].get("language", "-") for d in all_docs}
    pairs = Counter(
        f"{language[r['id']]} <- {language[c['duplicate_of']]}" for r in cuts for c in r["cuts"]
    )
    lines += ["", "Spans cut by language (cut document <- kept copy): "
              + ", ".join(f"{k} {v}" for k, v in pairs.most_common())]  # fmt: skip
    spans = Counter(" ".join(c["text_prefix"].split())[:90] for r in cuts for c in r["cuts"])
    lines += ["", "Most frequent cut spans (first 90 characters):", "",
              "| copies cut | span |", "| ---: | --- |"]  # fmt: skip
    lines += [f"| {n} | {t.replace('|', '/')} |" for t, n in spans.most_common(8)]
    table = "\n".join(lines) + "\n"
    print(table)
    (_pages.RESULTS / "substring.md").write_text(table)


if __name__ == "__main__":
    main()
