"""bench_suite: the CPU smoke run (debug preset, a few items per task) writes its table."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = "benchmarks.eval.bench_suite"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def test_smoke_run_scores_every_task_file(tmp_path):
    from llm_tokenize import TokenizerConfig, train_tokenizer

    with gzip.open(SAMPLE / "books" / "shakespeare.jsonl.gz", "rt") as f:
        texts = [json.loads(line)["text"][:20_000] for _, line in zip(range(2), f, strict=False)]
    train_tokenizer(texts, TokenizerConfig(vocab_size=300, show_progress=False)).save(
        tmp_path / "tokenizer.json"
    )
    out = tmp_path / "suite.md"
    args = ["--preset", "debug", "--limit", "3", "--device", "cpu"]
    args += ["--tokenizer", str(tmp_path / "tokenizer.json"), "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    tasks = sorted(p.name.split(".")[0] for p in (SAMPLE / "eval").glob("*.jsonl*"))
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert sorted(r.split(" | ")[0].removeprefix("| ") for r in rows[1:]) == tasks
    assert f"**{3 * len(tasks)} items" in text and "here: n/a" in text
