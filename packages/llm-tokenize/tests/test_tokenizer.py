import copy
import json
import pickle

import pytest

from llm_tokenize import Tokenizer, TokenizerFileError, load_hf_tokenizer


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


def other_family_files(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    wordpiece = HFTokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    unigram = HFTokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0))
    metaspace_bpe = HFTokenizer(models.BPE({"<unk>": 0, "▁a": 1}, [], unk_token="<unk>"))
    metaspace_bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    metaspace_bpe.decoder = decoders.Metaspace()
    no_byte_decoder = HFTokenizer(models.BPE())
    no_byte_decoder.pre_tokenizer = pre_tokenizers.ByteLevel()
    files = {}
    for name, tok in [("wordpiece", wordpiece), ("unigram", unigram),
                      ("metaspace", metaspace_bpe), ("nodecoder", no_byte_decoder)]:  # fmt: skip
        files[name] = tmp_path / f"{name}.json"
        tok.save(str(files[name]))
    return files


@pytest.mark.parametrize(
    ("family", "error"),
    [
        ("wordpiece", r"wordpiece.json: model type 'WordPiece' is not supported"),
        ("unigram", r"unigram.json: model type 'Unigram' is not supported"),
        ("metaspace", r"metaspace.json: pre_tokenizer \['Metaspace'\] has no ByteLevel"),
        ("nodecoder", r"nodecoder.json: decoder None has no ByteLevel"),
    ],
)
def test_other_model_families_are_refused_by_name(tmp_path, family, error):
    path = other_family_files(tmp_path)[family]
    with pytest.raises(TokenizerFileError, match=error):
        Tokenizer.from_file(path)


def test_special_token_text_stays_text_only_through_our_loader(tokenizer_4k, tmp_path):
    """tokenizers' default splits added tokens out of text: a literal "<|endoftext|>" in a code
    file would become the EOS id. `Tokenizer` and `load_hf_tokenizer` switch that off, both for
    a trained tokenizer and one loaded from the file (the switch is not stored in it)."""
    from tokenizers import Tokenizer as HFTokenizer

    path = tokenizer_4k.save(tmp_path / "tokenizer.json")
    text = 'eos = "<|endoftext|>"  # <|pad|>'
    assert 0 in HFTokenizer.from_file(str(path)).encode(text).ids  # the hazard
    # A copy (pickle, deepcopy: how datatrove's shard tasks get it) keeps the switch too.
    copies = (pickle.loads(pickle.dumps(tokenizer_4k)), copy.deepcopy(tokenizer_4k))
    for tok in (tokenizer_4k, Tokenizer.from_file(path), *copies):
        ids = tok.encode(text)
        assert tok.eos_id not in ids and tok.token_id("<|pad|>") not in ids
        assert tok.decode(ids) == text
        assert tok.encode_batch([text]) == [ids]
    assert load_hf_tokenizer(path).encode(text).ids == ids
    # Put by id, a special token decodes to its string (and can be skipped).
    assert tokenizer_4k.decode([*ids, 0]) == text + "<|endoftext|>"
    assert tokenizer_4k.decode([*ids, 0], skip_special_tokens=True) == text


def test_token_id_names_a_missing_token(tokenizer_4k):
    assert tokenizer_4k.token_id("<|pad|>") == 1
    with pytest.raises(KeyError, match="<|bos|>"):
        tokenizer_4k.token_id("<|bos|>")


def test_saved_file_has_the_usual_mode(tokenizer_4k, tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = tokenizer_4k.save(tmp_path / "tokenizer.json")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_from_file_reads_the_eos_the_card_records(shakespeare, tmp_path):
    """A tokenizer trained with another eos_token has no <|endoftext|>: `from_file` must take
    the card's EOS (it took the default and failed)."""
    from llm_tokenize import TokenizerConfig, train_tokenizer
    from llm_tokenize.artifacts import CARD_FILE, write_card

    config = TokenizerConfig(vocab_size=300, eos_token="<eos>", show_progress=False)
    path = train_tokenizer(shakespeare[:1], config).save(tmp_path / "tokenizer.json")
    write_card({"special_tokens": {"eos": {"token": "<eos>", "id": 0}}}, tmp_path / CARD_FILE)
    tok = Tokenizer.from_file(path)
    assert (tok.eos_token, tok.eos_id) == ("<eos>", 0)
    (tmp_path / CARD_FILE).unlink()  # no card: the default EOS, which this file lacks
    with pytest.raises(TokenizerFileError, match=r"tokenizer.json: EOS token '<\|endoftext\|>'"):
        Tokenizer.from_file(path)
