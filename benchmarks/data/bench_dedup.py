"""What each dedup stage does on real near-duplicates: partial translations and two editions.

1. Web: the Debian handbook in many languages (WARC files). Many "translated" pages are the
   English page again inside translated navigation. The run curates every language
   (`languages=()`), with exact, URL and MinHash dedup; the table counts what each stage
   removed, and, as ground truth for MinHash, measures the word 5-gram Jaccard similarity of
   every non-English page to the English page of the same path (after exact and URL dedup):
   pairs above 0.8 should be caught with probability >= 1-(1-0.8^8)^14 = 0.92.
2. Books: Shakespeare's plays in a modern and a First Folio edition (JSONL). Their Jaccard is
   far below any useful MinHash threshold; the table reports what each stage did with them.

Run (paths to the corpus folders; a few minutes on 2 CPU cores):

    uv run python -m benchmarks.data.bench_dedup --web <corpus>/web \
        --books <corpus>/books/shakespeare.jsonl.gz

Writes `benchmarks/data/results/dedup-<date>.md` (with date, machine and load average).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from llm_data import CurationConfig, DedupConfig, SourceConfig, run_curation
from llm_data.minhash import lsh_probability, word_tokenizer_for

RESULTS = Path(__file__).resolve().parent / "results"
_LANG_IN_URL = re.compile(r"/browse/([a-z]{2}(?:-[A-Z]{2})?)/")


def shingles(text: str, language: str = "en", n: int = 5) -> set[str]:
    """Word n-grams as MinHash sees them (datatrove's text normalisation and tokenizer)."""
    from datatrove.utils.text import TextNormConfig, ngrams, simplify_text

    tokenizer = word_tokenizer_for(language) or word_tokenizer_for("en")
    words = tokenizer.word_tokenize(simplify_text(text, TextNormConfig()))
    return {" ".join(g) for g in ngrams(words, n)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def read_jsonl_gz(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            docs += [json.loads(line) for line in f]
    return docs


def curate(sources: list[SourceConfig], out: Path, dedup: DedupConfig, **kw) -> tuple[dict, float]:
    start = time.perf_counter()
    config = CurationConfig(
        sources=sources, output_dir=str(out), dedup=dedup, overwrite=True, **kw
    )  # fmt: skip
    return run_curation(config), time.perf_counter() - start


def stage_table(stats: dict) -> list[str]:
    lines = ["| source | stage | in | kept | removed (why) |", "| --- | --- | ---: | ---: | --- |"]
    for source, result in stats.items():
        for row in result["stages"]:
            why = ", ".join(f"{k} {v}" for k, v in row.get("removed_by", {}).items())
            lines.append(f"| {source} | {row['stage']} | {row['in']} | {row['kept']} | {why} |")
    return lines


def web_report(web: Path, work: Path, tasks: int, workers: int) -> list[str]:
    # Run 1: extraction, filters, exact and URL dedup. Run 2: MinHash alone on run 1's output
    # (the same as one run with all three, and it keeps the full text of what MinHash drops).
    stats, seconds = curate(
        [SourceConfig(name="web", path=str(web), format="warc")],
        work / "web",
        DedupConfig(minhash=False),
        languages=(),
        tasks=tasks,
        workers=workers,
    )
    entering = read_jsonl_gz(work / "web" / "web")
    minhash_stats, minhash_seconds = curate(
        [
            SourceConfig(
                name="web", path=str(work / "web" / "web"), format="jsonl", quality_filters=False
            )
        ],
        work / "web-minhash",
        DedupConfig(exact=False, url=False),
        tasks=tasks,
        workers=workers,
    )
    stats["web"]["stages"].append(minhash_stats["web"]["stages"][-1])
    removed = read_jsonl_gz(work / "web-minhash" / "excluded" / "minhash")
    # Each MinHash cluster keeps one copy: two pages share a cluster when their kept copy
    # (the page itself when it was kept) is the same.
    kept_copy = {r["id"]: r["duplicate_of"] for r in removed}
    english = {_path_key(d["metadata"]["url"]): d for d in entering if _lang(d) == "en-US"}
    english_shingles = {k: shingles(d["text"]) for k, d in english.items()}
    sims = []
    for doc in entering:
        key = _path_key(doc["metadata"]["url"])
        if _lang(doc) in (None, "en-US") or key not in english:
            continue
        j = jaccard(shingles(doc["text"]), english_shingles[key])
        cluster_of = kept_copy.get(doc["id"], doc["id"])
        sims.append((j, cluster_of == kept_copy.get(english[key]["id"], english[key]["id"])))
    by_lang = Counter(_lang(r) for r in removed).most_common()
    lines = [
        "## Web: Debian handbook, every language",
        "",
        f"`run_curation` wall time: {seconds:.0f} s without MinHash (tasks={tasks}, "
        f"workers={workers}); MinHash on its output: {minhash_seconds:.0f} s.",
        "",
        *stage_table(stats),
        "",
        f"MinHash removed {len(removed)} pages that exact and URL dedup kept; by language of "
        f"the removed page: {', '.join(f'{k} {v}' for k, v in by_lang)}.",
        "",
        "Non-English pages against the English page of the same path, after exact and URL "
        "dedup (ground truth for MinHash; word 5-gram Jaccard as MinHash shingles it). "
        "Caught: the page and the English page ended in one MinHash cluster (one kept copy), "
        "directly or through other languages' copies, so low-similarity pages can be caught "
        "through a chain; the last column is the chance of a direct LSH match:",
        "",
        "| Jaccard to the English page | pages | in the English page's cluster | "
        "1-(1-J^8)^14 (mean) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for lo, hi in ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)):
        band = [(j, c) for j, c in sims if lo <= j < hi]
        if band:
            p = sum(lsh_probability(j, 14, 8) for j, _ in band) / len(band)
            lines.append(
                f"| [{lo:.1f}, {min(hi, 1.0):.1f}{')' if hi < 1 else ']'} | {len(band)} | "
                f"{sum(c for _, c in band)} | {p:.3f} |"
            )
    return lines


def _lang(doc: dict) -> str | None:
    url = (doc.get("metadata") or {}).get("url") or doc.get("url") or ""  # doc or exclusion
    m = _LANG_IN_URL.search(url)
    return m.group(1) if m else None


def _path_key(url: str) -> str:
    return _LANG_IN_URL.sub("/browse/*/", url)


def books_report(books: Path, work: Path) -> list[str]:
    out = work / "books"
    stats, seconds = curate(
        [SourceConfig(name="books", path=str(books), format="jsonl", quality_filters=False)],
        out,
        DedupConfig(),
    )
    with gzip.open(books, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    removed = {
        r["id"]: r for m in ("exact", "url", "minhash") for r in read_jsonl_gz(out / "excluded" / m)
    }
    folio = [d for d in docs if d["metadata"].get("edition") == "first-folio"]
    modern = [d for d in docs if d["metadata"].get("edition") != "first-folio"]
    sh = {d["id"]: shingles(d["text"]) for d in docs}
    rows = []
    for f_doc in folio:  # its modern edition: the most similar modern text
        best = max(modern, key=lambda m: jaccard(sh[f_doc["id"]], sh[m["id"]]))
        j = jaccard(sh[f_doc["id"]], sh[best["id"]])
        rows.append((f_doc["id"], best["id"], j))
    js = sorted(j for *_, j in rows)
    either = sum(1 for a, b, _ in rows if a in removed or b in removed)
    return [
        "## Books: Shakespeare, modern and First Folio editions",
        "",
        f"`run_curation` wall time: {seconds:.0f} s.",
        "",
        *stage_table(stats),
        "",
        f"{len(rows)} modern / First Folio pairs (each Folio text matched to its most similar "
        f"modern text): word 5-gram Jaccard min {js[0]:.3f}, median {js[len(js) // 2]:.3f}, "
        f"max {js[-1]:.3f}; LSH probability at the max: "
        f"{lsh_probability(js[-1], 14, 8):.2e}. Pairs with either edition removed by any "
        f"dedup stage: {either}. Removed books: "
        f"{sorted((r['id'], r['reason'], r['duplicate_of']) for r in removed.values()) or 'none'}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--web", type=Path, required=True, help="folder of handbook WARC files")
    parser.add_argument("--books", type=Path, required=True, help="shakespeare.jsonl.gz")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lines = web_report(args.web, work, args.tasks, args.workers)
        lines += ["", *books_report(args.books, work)]
    now = datetime.datetime.now(datetime.UTC)
    head = [
        f"# Dedup on real near-duplicates ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, shared with other jobs: load "
        f"average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end (wall times "
        "depend on it). MinHash: word 5-grams, 14 bands x 8 rows (the defaults).",
        "",
    ]
    text = "\n".join(head + lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"dedup-{now:%Y-%m-%d}.md"
    tmp_path = path.with_suffix(".md.tmp")
    tmp_path.write_text(text)
    tmp_path.replace(path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
