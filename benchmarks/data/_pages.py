"""Handbook pages for the data benchmarks: read, extracted as the pipeline does, cached.

The data scripts import it as ``benchmarks.data._pages``.
Extraction (Trafilatura, ~30 ms a page) is cached as JSONL in the system temp folder, keyed on
the WARC file's name and size, so a second script or run starts at once.
"""

from __future__ import annotations

import datetime
import importlib.metadata  # noqa: F401  (datatrove 0.9 uses it without importing it)
import json
import os
import re
import tempfile
from pathlib import Path

from benchmarks._machine import cpu_name

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
# The full 23-language corpus lives beside the repository when present; else the shipped sample.
DEFAULT_CORPUS = (
    ROOT.parent / "shared" / "corpus" / "web"
    if (ROOT.parent / "shared" / "corpus" / "web").is_dir()
    else ROOT / "data" / "sample" / "web"
)
_NAME = re.compile(r"handbook-(?P<lang>[a-z]{2})-(?P<region>[A-Z]{2})\.warc\.gz$")
_CACHE = Path(tempfile.gettempdir()) / "llm-data-bench-pages"


def file_tag(path: Path) -> str:
    """`handbook-zh-TW.warc.gz` -> `zh-TW` (language and region from the file name)."""
    match = _NAME.search(path.name)
    if not match:
        raise ValueError(f"{path}: expected a name like handbook-<lang>-<REGION>.warc.gz")
    return f"{match['lang']}-{match['region']}"


def warc_files(corpus: Path) -> list[Path]:
    files = sorted(corpus.glob("handbook-*.warc.gz"))
    if not files:
        raise FileNotFoundError(f"{corpus}: no handbook-<lang>-<REGION>.warc.gz files")
    return files


def read_pages(path: Path) -> list:
    """datatrove Documents of one WARC file, as the reader step yields them (HTML text)."""
    from datatrove.pipeline.readers import WarcReader

    return list(WarcReader(str(path.parent), glob_pattern=path.name).run())


def extracted_pages(path: Path) -> list[dict]:
    """`[{"id", "url", "text"}]` of one WARC file after the pipeline's Trafilatura settings."""
    stat = path.stat()
    cache = _CACHE / f"{path.name}.{stat.st_size}.jsonl"
    if cache.exists():
        return [json.loads(line) for line in cache.read_text().splitlines()]
    from datatrove.pipeline.extractors import Trafilatura

    extractor = Trafilatura(favour_precision=True, timeout=5.0, deduplicate=False)
    rows = [
        {"id": d.id, "url": d.metadata.get("url", ""), "text": d.text}
        for d in extractor.run(iter(read_pages(path)))
    ]
    _CACHE.mkdir(exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(cache)
    return rows


def provenance() -> list[tuple[str, str]]:
    """Date, CPU, cores and load average: the machine is shared, so the load goes with numbers."""
    cpu = cpu_name()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [("date", now), ("machine", f"{cpu}, {os.cpu_count()} cores"),
            ("load average (1, 5, 15 min)", load)]  # fmt: skip


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
