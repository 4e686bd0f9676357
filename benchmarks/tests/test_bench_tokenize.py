"""bench_tokenize: a tiny run on extracted text already in its cache (no Trafilatura)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = "benchmarks.tokenize.bench_tokenize"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def _jsonl_gz(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))


def _sample(name: str, n: int) -> list[dict]:
    with gzip.open(SAMPLE / name, "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def test_tiny_run_writes_tables_csv_and_plots(tmp_path):
    corpus, cache, out = tmp_path / "corpus", tmp_path / "cache", tmp_path / "out"
    (corpus / "web").mkdir(parents=True)
    (corpus / "web" / "handbook-xx-XX.warc.gz").write_bytes(b"")  # its text is in the cache
    meta = {"language": "xx-XX"}
    pages = [
        {"id": str(i), "text": f"Page {i}: the Debian handbook. 日本語 " * 20, "metadata": meta}
        for i in range(6)
    ]
    _jsonl_gz(cache / "web" / "xx-XX.jsonl.gz", pages)
    books = [{**r, "text": r["text"][:20_000]} for r in _sample("books/shakespeare.jsonl.gz", 2)]
    _jsonl_gz(corpus / "books" / "books.jsonl.gz", books)
    _jsonl_gz(corpus / "code" / "code.jsonl.gz", _sample("code/python-stdlib.jsonl.gz", 6))
    args = ["--corpus", str(corpus), "--cache", str(cache), "--out", str(out)]
    args += ["--vocab-sizes", "300", "--budget-mb", "0.03", "--workers", "1"]
    proc = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (md,) = out.glob("tokenize-*.md")
    text = md.read_text()
    for expected in ("load average", "| gpt4-300 |", "| tokenizers-default-300 |", "xx-XX"):
        assert expected in text
    assert "Held-out documents that differ, over all tokenizers: 0." in text
    (csv,) = out.glob("tokenize-*.csv")
    assert len(csv.read_text().splitlines()) == 1 + 5 * 4  # 5 tokenizers x (3 sources + 1 lang)
    assert len(list(out.glob("tokenize-*.png"))) == 2  # per size, and by size
