import csv
import gzip
import json
import re

import pytest

from llm_tokenize import Tokenizer
from llm_tokenize.cli import main


@pytest.fixture
def data(tmp_path, shakespeare, python_code):
    """web: 2 pages (en, ja) in plain JSONL; books: 1 play gzipped."""
    web = tmp_path / "data" / "web"
    web.mkdir(parents=True)
    pages = [
        {"id": "p1", "text": "The Debian handbook. " * 50, "metadata": {"language": "en"}},
        {"id": "p2", "text": "日本語のテキストです。" * 30, "metadata": {"language": "ja"}},
    ]
    (web / "0.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pages))
    books = tmp_path / "data" / "books.jsonl.gz"
    books.write_bytes(
        gzip.compress((json.dumps({"id": "b", "text": shakespeare[1]}) + "\n").encode())
    )
    return web, books


def write_config(tmp_path, text):
    path = tmp_path / "tok.yaml"
    path.write_text(text)
    return path


def test_train_then_stats_then_compare(tmp_path, data, capsys):
    web, books = data
    config = write_config(
        tmp_path,
        f"""
vocab_size: 600
pre_tokenizer: code
max_digits: 3
fim: true
show_progress: false
sources:
  - {{name: web, paths: ["{web}"], proportion: 0.5}}
  - {{name: books, paths: ["{books}"], proportion: 0.5}}
""",
    )
    out = tmp_path / "tok"
    assert main(["train", str(config), "--out", str(out)]) == 0
    assert "600 tokens" in capsys.readouterr().out
    card = json.loads((out / "tokenizer_card.json").read_text())
    assert card["settings"]["pre_tokenizer"] == "code" and card["vocab_size"] == 600
    assert Tokenizer.from_file(out / "tokenizer.json").token_id("<|fim_suffix|>") == 3

    assert main(["stats", str(out / "tokenizer.json"), "--data", str(web), f"plays={books}"]) == 0
    printed = capsys.readouterr().out
    assert "| source | plays |" in printed and "| language | ja |" in printed
    assert "encode" in printed and "MB/s" in printed and "3 documents, all identical" in printed

    other = tmp_path / "other.json"
    other.write_bytes((out / "tokenizer.json").read_bytes())
    args = ["compare", f"mine={out / 'tokenizer.json'}", str(other), "--data", str(web)]
    assert main([*args, "--out", str(tmp_path / "cmp")]) == 0
    assert "| kind | group | mine | other |" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "cmp" / "stats.csv").read_text().splitlines()))
    assert len(rows) == 2 * 3  # 2 tokenizers x (web, en, ja)
    assert (tmp_path / "cmp" / "stats.md").is_file()


@pytest.mark.parametrize(
    ("yaml", "error"),
    [
        ("vocab_sise: 600\n", r"tok.yaml: Key 'vocab_sise' not in 'TokenizerConfig'"),
        ("sources: [{name: a, proportio: 1}]\n", r"Key 'proportio' not in 'TrainingSource'"),
        ("vocab_size: 100\nfim: true\n", r"vocab_size: got 100; must be >= 260"),
        ("pre_tokenizer: gpt5\n", r"tok.yaml: Invalid value 'gpt5'"),
        ("vocab_size: 600\n", r"sources: empty"),
        ("sources: [{name: a, paths: [nowhere.jsonl]}]\n", r"source 'a': nowhere.jsonl is no"),
    ],
)
def test_train_config_errors_name_the_key(tmp_path, capsys, yaml, error):
    assert main(["train", str(write_config(tmp_path, yaml)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-tokenize: error: ")
    assert re.search(error, err), err
    assert not (tmp_path / "o").exists()


def test_stats_errors_name_the_file(tmp_path, data, capsys):
    web, _ = data
    (tmp_path / "wp.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    assert main(["stats", str(tmp_path / "wp.json"), "--data", str(web)]) == 2
    assert "wp.json: model type 'WordPiece' is not supported" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "missing.json"), "--data", str(web)]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_round_trip_failure_exits_1(tmp_path, data, tokenizer_4k, capsys):
    web, _ = data
    tok = json.loads(tokenizer_4k.hf.to_str())
    tok["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True  # lossy
    (tmp_path / "lossy.json").write_text(json.dumps(tok))
    assert main(["stats", str(tmp_path / "lossy.json"), "--data", str(web)]) == 1
    captured = capsys.readouterr()
    assert "2 differ, e.g. ['web/p1', 'web/p2']" in captured.out
    assert "2 document(s) do not round trip" in captured.err
