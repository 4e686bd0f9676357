"""Shared fixtures: real sample text and one tokenizer trained once per session."""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path

import pytest

from llm_tokenize import TokenizerConfig, train_tokenizer

SAMPLE = Path(__file__).parents[3] / "data" / "sample"


def read_jsonl_texts(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def crude_warc_texts(path: Path, max_pages: int) -> list[str]:
    """Visible text of the first HTML pages of a WARC file (regex tag stripping; tests only)."""
    with gzip.open(path, "rb") as f:
        raw = f.read().decode("utf-8", errors="replace")
    pages = []
    for record in raw.split("WARC/1.0\r\n" if "WARC/1.0\r\n" in raw else "WARC/1.0\n")[1:]:
        body = record.split("<body", 1)[-1] if "<body" in record else ""
        body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", " ", body))
        text = re.sub(r"\s+", " ", text).strip()
        if len(text) > 500:
            pages.append(text)
        if len(pages) == max_pages:
            break
    return pages


@pytest.fixture(scope="session")
def web_pages():
    """Function (language, max_pages) -> crude text of handbook pages in that language."""
    return lambda lang, max_pages: crude_warc_texts(
        SAMPLE / "web" / f"handbook-{lang}.warc.gz", max_pages
    )


@pytest.fixture(scope="session")
def shakespeare() -> list[str]:
    return read_jsonl_texts(SAMPLE / "books" / "shakespeare.jsonl.gz")


@pytest.fixture(scope="session")
def python_code() -> list[str]:
    return read_jsonl_texts(SAMPLE / "code" / "python-stdlib.jsonl.gz")


@pytest.fixture(scope="session")
def tokenizer_4k(shakespeare, python_code):
    """4096-token BPE trained on even-indexed Shakespeare and stdlib documents (~3 s)."""
    config = TokenizerConfig(vocab_size=4096, pad_token="<|pad|>", show_progress=False)
    return train_tokenizer(shakespeare[::2] + python_code[::2], config)


@pytest.fixture
def at_repo_root(monkeypatch) -> Path:
    """Run the test from the repository root, so that "data/sample/..." paths resolve."""
    monkeypatch.chdir(SAMPLE.parents[1])
    return SAMPLE.parents[1]
