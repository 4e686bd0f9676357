"""The benchmark's text: web pages extracted as llm-data extracts them, books and code as given.

Extraction is the slow part (Trafilatura, ~50 ms a page), so its output is cached per language in
a git-ignored folder; books and code are read straight from their JSONL files.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from llm_formats.documents import write_documents
from llm_tokenize import Document

log = logging.getLogger(__name__)


def language_of(warc: Path) -> str:
    """``handbook-zh-CN.warc.gz`` -> ``"zh-CN"`` (the handbook's language; partly translated
    languages still hold some English pages)."""
    return warc.name.removeprefix("handbook-").removesuffix(".warc.gz")


# Seconds per page before Trafilatura gives up. llm-data uses 5 s; on a machine shared with other
# jobs pages then time out and vanish, so the benchmark waits longer and counts what is lost.
EXTRACT_TIMEOUT_S = 60.0


def extract_warc(warc: str) -> tuple[list[dict], dict]:
    """Pages of one WARC file through llm-data's WARC reader and its Trafilatura settings, and
    datatrove's counts (pages read, extracted, timed out, failed)."""
    from datatrove.pipeline.extractors import Trafilatura

    from llm_data.readers import StrictWarcReader

    path = Path(warc)
    reader = StrictWarcReader(str(path.parent), glob_pattern=path.name)
    # llm_data.pipeline.build_source_pipeline's extractor, with a longer timeout.
    extractor = Trafilatura(favour_precision=True, timeout=EXTRACT_TIMEOUT_S, deduplicate=False)
    records = [
        {"id": doc.id, "text": doc.text, "metadata": {"language": language_of(path)}}
        for doc in extractor.run(reader.run())
        if doc.text.strip()
    ]
    counts = {k: int(v.total) for k, v in extractor.stats.stats.items() if k != "time"}
    return records, counts


def cached_web(corpus: Path, cache: Path, workers: int) -> list[Path]:
    """One extracted JSONL.gz per language under ``cache/web``, extracting what is missing."""
    warcs = sorted((corpus / "web").glob("*.warc.gz"))
    if not warcs:
        raise FileNotFoundError(f"no *.warc.gz files in {corpus / 'web'}")
    out = {w: cache / "web" / f"{language_of(w)}.jsonl.gz" for w in warcs}
    todo = [w for w in warcs if not out[w].is_file()]
    if todo:
        log.info("extracting %d WARC files with %d processes (cached in %s)", len(todo), workers,
                 cache)  # fmt: skip
        with ProcessPoolExecutor(workers) as pool:
            for warc, (records, counts) in zip(
                todo, pool.map(extract_warc, map(str, todo)), strict=True
            ):
                write_documents(out[warc], records)
                counts_file(out[warc]).write_text(json.dumps(counts))
                log.info("%s: %d pages kept, %s", language_of(warc), len(records), counts)
    return [out[w] for w in warcs]


def counts_file(path: Path) -> Path:
    return path.with_name(path.name.replace(".jsonl.gz", ".counts.json"))


def extraction_counts(cache: Path) -> dict[str, int]:
    """datatrove's extraction counts summed over the cached languages."""
    total: dict[str, int] = {}
    for path in sorted((cache / "web").glob("*.counts.json")):
        for key, value in json.loads(path.read_text()).items():
            total[key] = total.get(key, 0) + value
    return total


def read_all(corpus: Path, cache: Path, workers: int) -> list[Document]:
    """Web pages (by language), books and code, as llm_tokenize Documents."""
    from llm_tokenize.corpus import read_documents

    docs: list[Document] = []
    for path in cached_web(corpus, cache, workers):
        docs += read_documents(path, "web")
    for source in ("books", "code"):
        for path in sorted((corpus / source).glob("*.jsonl.gz")):
            docs += read_documents(path, source)
    return docs
