import json

import pytest

from llm_tokenize import Tokenizer


def test_save_and_load_round_trip(tokenizer_4k, tmp_path):
    path = tokenizer_4k.save(tmp_path / "sub" / "tokenizer.json")
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left
    loaded = Tokenizer.from_file(path)
    text = "Friends, Romans, countrymen 😀 日本"
    assert loaded.encode(text) == tokenizer_4k.encode(text)
    assert (loaded.vocab_size, loaded.eos_id) == (4096, 0)
    data = json.loads(path.read_text())
    assert data["model"]["type"] == "BPE"
    assert data["added_tokens"][0]["content"] == "<|endoftext|>"


def test_loads_with_plain_tokenizers(tokenizer_4k, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer

    path = tokenizer_4k.save(tmp_path / "tokenizer.json")
    hf = HFTokenizer.from_file(str(path))
    assert hf.encode("to be or not").ids == tokenizer_4k.encode("to be or not")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Tokenizer.from_file(tmp_path / "nope.json")


def test_invalid_file_names_it(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.from_file(bad)


def test_missing_eos_names_file_and_token(tokenizer_4k, tmp_path):
    path = tokenizer_4k.save(tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match=r"tokenizer.json.*<\|eot\|>"):
        Tokenizer.from_file(path, eos_token="<|eot|>")


def test_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, llm_tokenize; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
