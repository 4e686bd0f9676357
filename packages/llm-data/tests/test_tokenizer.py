"""llm-data's one tokenizer.json loader: the card's EOS, special-token text kept as text."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from llm_data.cli import main
from llm_data.inspect import inspect_curated
from llm_data.tokenizer import load_tokenizer

TEXT = "print('<|endoftext|>') ends a sample in GPT-2"


def test_inspect_counts_special_token_text_as_the_shards_encode_it(tmp_path, tokenizer_json):
    """`inspect --tokenizer` split "<|endoftext|>" in a text out as one special token, while
    the shards encode it as text: the counts disagreed."""
    (tmp_path / "code").mkdir()
    (tmp_path / "curation_stats.json").write_text("{}")
    with gzip.open(tmp_path / "code" / "00000.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "0", "text": TEXT}) + "\n")
    report = inspect_curated(tmp_path, tokenizer=tokenizer_json)
    (ids,) = load_tokenizer(tokenizer_json).encode_batch([TEXT])
    assert report["sources"]["code"]["tokens"] == len(ids)
    assert load_tokenizer(tokenizer_json).eos_id not in ids


def test_eos_is_the_cards(tmp_path, tokenizer_json):
    path = tmp_path / "tokenizer.json"
    shutil.copy(tokenizer_json, path)
    assert load_tokenizer(path).eos_id == 0  # no card: the default EOS
    card = {"special_tokens": {"eos": {"token": "<|x|>", "id": 5}}}
    (tmp_path / "tokenizer_card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"tokenizer.json: EOS token '<\|x\|>' .*tokenizer_card"):
        load_tokenizer(path)
    assert load_tokenizer(path, eos_token="<|endoftext|>").eos_id == 0


def test_shards_cli_names_a_missing_eos(tmp_path, tokenizer_json, capsys):
    pytest.importorskip("streaming")
    (tmp_path / "cur").mkdir()
    args = ["shards", str(tmp_path / "cur"), "--tokenizer", str(tokenizer_json), "--out",
            str(tmp_path / "sh"), "--seq-len", "8", "--eos-token", "<eos>"]  # fmt: skip
    assert main(args) == 2
    assert "EOS token '<eos>' is not in its vocabulary" in capsys.readouterr().err
