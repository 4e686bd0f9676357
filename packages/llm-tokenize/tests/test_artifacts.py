import gzip
import hashlib
import json
from pathlib import Path

import pytest

from llm_tokenize import (
    CARD_FILE,
    CorpusError,
    Tokenizer,
    TokenizerConfig,
    TrainingSource,
    read_card,
    train_from_config,
)


@pytest.fixture
def sources(tmp_path, shakespeare, python_code):
    """Two small sources: 2 plays in a gzip file (~260 kB), 40 stdlib modules in two files."""
    (tmp_path / "books").mkdir()
    (tmp_path / "code").mkdir()
    write_jsonl(tmp_path / "books" / "plays.jsonl.gz", shakespeare[:2])
    write_jsonl(tmp_path / "code" / "a.jsonl", python_code[:20])
    write_jsonl(tmp_path / "code" / "b.jsonl", python_code[20:40])
    return [
        TrainingSource(name="books", paths=[str(tmp_path / "books")], proportion=0.8),
        TrainingSource(name="code", paths=[str(tmp_path / "code" / "*.jsonl")], proportion=0.2),
    ]


def write_jsonl(path, texts):
    lines = "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(lines.encode("utf-8")))
    else:
        path.write_text(lines, encoding="utf-8")


def test_writes_tokenizer_and_card(sources, tmp_path):
    config = TokenizerConfig(
        vocab_size=800, bos_token="<|bos|>", fim=True, sources=sources, max_bytes=200_000,
        show_progress=False,
    )  # fmt: skip
    out = tmp_path / "out"
    tok, card = train_from_config(config, out)
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", CARD_FILE]
    assert read_card(out / "tokenizer.json") == card == json.loads((out / CARD_FILE).read_text())
    sha = hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest()
    assert card["tokenizer_sha256"] == sha
    assert card["vocab_size"] == tok.vocab_size == 800
    assert card["special_tokens"]["bos"] == {"token": "<|bos|>", "id": 1}
    assert card["special_tokens"]["fim_middle"]["id"] == tok.token_id("<|fim_middle|>") == 3
    assert card["settings"]["pre_tokenizer"] == "gpt4" and card["settings"]["max_bytes"] == 200_000
    books = card["training"]["sources"]["books"]
    assert books["files"][0]["path"].endswith("books/plays.jsonl.gz")
    book_sha = hashlib.sha256(Path(books["files"][0]["path"]).read_bytes()).hexdigest()
    assert books["files"][0]["sha256"] == book_sha
    # 80/20 of 200 kB: 160 kB of plays (a play is ~130 kB: one whole and a part of one of the
    # two, by count), 40 kB of code (~10 modules).
    code = card["training"]["sources"]["code"]
    assert [f["path"][-7:] for f in code["files"]] == ["a.jsonl", "b.jsonl"]
    assert books["train_docs"] == 1 and 100_000 < books["train_bytes"] < 200_000
    assert code["train_bytes"] == pytest.approx(40_000, rel=0.5)
    stats = card["statistics"]
    assert set(stats["source"]) == {"books", "code"} and stats["language"] == {}
    assert stats["source"]["code"]["round_trip_failures"] == 0
    assert stats["source"]["books"]["docs"] == books["docs"] == 2
    assert Tokenizer.from_file(out / "tokenizer.json").encode("x y") == tok.encode("x y")


def test_a_small_source_is_not_drowned(sources, tmp_path):
    sources[0].proportion, sources[1].proportion = 0.1, 0.9
    config = TokenizerConfig(vocab_size=600, sources=sources, show_progress=False)
    _, card = train_from_config(config, tmp_path / "out")
    code = card["training"]["sources"]["code"]
    total = card["training"]["bytes"]
    # Code is ~a third of the bytes; at 0.9 it is repeated to ~90% of the mixture.
    assert code["train_bytes"] > code["bytes"] and code["train_bytes"] / total > 0.85


def test_without_proportions_every_document_once(sources, tmp_path):
    for s in sources:
        s.proportion = None
    config = TokenizerConfig(vocab_size=600, sources=sources, show_progress=False)
    _, card = train_from_config(config, tmp_path / "out")
    for stats in card["training"]["sources"].values():
        assert (stats["train_docs"], stats["train_bytes"]) == (stats["docs"], stats["bytes"])


def test_empty_corpus_and_no_sources_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    config = TokenizerConfig(
        sources=[TrainingSource(name="e", paths=[str(tmp_path / "empty.jsonl")])],
        show_progress=False,
    )
    with pytest.raises(CorpusError, match=r"empty corpus: no text in 1 file\(s\).*empty.jsonl"):
        train_from_config(config, tmp_path / "out")
    with pytest.raises(CorpusError, match="sources: empty"):
        train_from_config(TokenizerConfig(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
