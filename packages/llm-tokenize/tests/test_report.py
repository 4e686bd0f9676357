import csv
import io

import pytest

from llm_tokenize import (
    Document,
    TokenizerConfig,
    compare,
    corpus_report,
    group_stats,
    to_csv,
    to_markdown,
    train_tokenizer,
)
from llm_tokenize.stats import partial_char_ids


@pytest.fixture(scope="module")
def ascii_tok(shakespeare):
    """Trained on one English play: no merge covers a CJK character."""
    return train_tokenizer(shakespeare[:1], TokenizerConfig(vocab_size=500, show_progress=False))


def test_byte_fallback_and_vocabulary_share(ascii_tok):
    ja = group_stats(ascii_tok, ["日本語"], unspaced=True)
    assert ja["tokens"] == 9 and ja["byte_fallback"] == 1.0  # 3 characters x 3 bytes
    assert ja["fertility"] == 3.0 and ja["fertility_unit"] == "char"
    en = group_stats(ascii_tok, ["the king", "the queen"])
    assert en["byte_fallback"] == 0.0 and en["words"] == 4
    ids = ascii_tok.encode_batch(["the king", "the queen"])
    assert en["vocab_used"] == len(set(ids[0]) | set(ids[1])) / 500
    assert en["fertility"] == en["tokens"] / 4
    assert en["round_trip_failures"] == 0 and en["nfc_changed"] == 0
    # ASCII tokens are whole characters, never fallback.
    assert partial_char_ids(ascii_tok.hf).isdisjoint(ascii_tok.encode("plain ascii"))


def test_round_trip_failures_are_found_and_named(ascii_tok):
    """A byte-level BPE that adds a prefix space (GPT-2's `add_prefix_space`) is not lossless."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import pre_tokenizers

    from llm_tokenize import Tokenizer

    lossy = HFTokenizer.from_str(ascii_tok.hf.to_str())
    lossy.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok = Tokenizer(lossy)
    row = group_stats(tok, ["king", " queen"], ids=["a", "b"])
    assert row["round_trip_failures"] == 1 and row["failed_ids"] == ["a"]


def test_nfc_tokenizer_round_trips_to_nfc_and_counts_changes(shakespeare):
    config = TokenizerConfig(vocab_size=300, nfc=True, show_progress=False)
    tok = train_tokenizer(shakespeare[:1], config)
    row = group_stats(tok, ["cafe\u0301", "café"])
    assert row["round_trip_failures"] == 0 and row["nfc_changed"] == 1


def docs():
    return [
        Document(id="1", text="The king is here.", source="web", language="en"),
        Document(id="2", text="日本語のテキスト", source="web", language="ja"),
        Document(id="3", text="def f(x):\n    return x\n", source="code"),
    ]


def test_corpus_report_groups_by_source_and_language(ascii_tok):
    report = corpus_report(ascii_tok, docs())
    assert list(report["source"]) == ["web", "code"] and list(report["language"]) == ["en", "ja"]
    assert report["source"]["web"]["docs"] == 2 and report["language"]["ja"]["docs"] == 1
    assert report["language"]["ja"]["fertility_unit"] == "char"
    assert report["source"]["web"]["fertility_unit"] == "word"


def test_compare_tables_csv_side_by_side(ascii_tok, tokenizer_4k):
    rows = compare({"small": ascii_tok, "4k": tokenizer_4k}, docs())
    assert len(rows) == 2 * 4  # 2 tokenizers x (2 sources + 2 languages)
    table = to_markdown(rows)
    assert "| kind | group | small | 4k |" in table
    assert "/char" in table and "small: 3 documents, all identical" in table
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert {r["tokenizer"] for r in parsed} == {"small", "4k"}
    code = {r["tokenizer"]: float(r["bytes_per_token"]) for r in parsed if r["group"] == "code"}
    assert code["4k"] > code["small"]  # trained on code, bigger vocabulary


def test_plot(ascii_tok, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (llm-tokenize[plots])")
    from llm_tokenize.report import plot

    path = plot(compare({"small": ascii_tok}, docs()), tmp_path / "stats.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and [p.name for p in tmp_path.iterdir()] == [
        "stats.png"
    ]
