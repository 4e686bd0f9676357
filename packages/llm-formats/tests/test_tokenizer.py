"""llm_formats.tokenizer: the card, the EOS and roles it records, the HF tokenizer files."""

from __future__ import annotations

import json

import pytest

from llm_formats.tokenizer import (
    CARD_FILE,
    DEFAULT_EOS_TOKEN,
    TokenizerFormatError,
    eos_token,
    hf_tokenizer_files,
    read_card,
    role_ids,
    special_token_roles,
    write_card,
)

ADDED = ["<|endoftext|>", "<eos>", "<|pad|>", "<|fim_prefix|>"]


def write_tokenizer(folder, post_processor=None):
    """A minimal tokenizer.json: the added tokens first, then a few byte symbols."""
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(ADDED)]  # fmt: skip
    vocab = {**{t: i for i, t in enumerate(ADDED)}, "a": 4, "b": 5}
    data = {"version": "1.0", "added_tokens": added, "post_processor": post_processor,
            "model": {"type": "BPE", "vocab": vocab, "merges": []}}  # fmt: skip
    path = folder / "tokenizer.json"
    path.write_text(json.dumps(data))
    return path


def card(**roles):
    return {"vocab_size": 6, "special_tokens": {r: {"token": t, "id": ADDED.index(t)}
                                                for r, t in roles.items()}}  # fmt: skip


def test_card_round_trip_and_roles(tmp_path):
    path = write_tokenizer(tmp_path)
    assert read_card(path) is None and special_token_roles(path) == {"eos": DEFAULT_EOS_TOKEN}
    written = card(eos="<eos>", pad="<|pad|>") | {"statistics": {"text": "日本"}}
    write_card(written, tmp_path / CARD_FILE)
    assert read_card(path) == written
    assert "日本" in (tmp_path / CARD_FILE).read_text(encoding="utf-8")  # UTF-8 kept as is
    assert special_token_roles(path) == {"eos": "<eos>", "pad": "<|pad|>"}
    assert eos_token(path) == "<eos>"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"special_tokens": {}}, "special_tokens has no 'eos' role"),
        ({"special_tokens": {"eos": {"token": "<eos>"}}}, r"special_tokens.eos must be"),
        ([1], "a tokenizer card is a JSON object"),
    ],
)
def test_invalid_cards_are_refused_naming_file_and_field(tmp_path, bad, error):
    with pytest.raises(TokenizerFormatError, match=f"{CARD_FILE}: {error}"):
        write_card(bad, tmp_path / CARD_FILE)
    (tmp_path / CARD_FILE).write_text(json.dumps(bad))
    with pytest.raises(TokenizerFormatError, match=error):
        read_card(write_tokenizer(tmp_path))


def test_an_eos_missing_from_the_vocabulary_names_the_file_and_the_card(tmp_path):
    path = write_tokenizer(tmp_path)
    write_card(card(eos="<eos>"), tmp_path / CARD_FILE)
    data = json.loads(path.read_text())
    data["added_tokens"] = data["added_tokens"][:1]
    del data["model"]["vocab"]["<eos>"]
    path.write_text(json.dumps(data))
    error = r"tokenizer.json: EOS token '<eos>' \(from .*tokenizer_card.json\)"
    with pytest.raises(TokenizerFormatError, match=error):
        eos_token(path)
    with pytest.raises(TokenizerFormatError, match=r"tokenizer.json: pad token 'x' is not"):
        role_ids(path, {"eos": "<|endoftext|>", "pad": "x"})


def test_hf_files_name_roles_keep_special_text_as_text_and_prepend_eos(tmp_path):
    path = write_tokenizer(tmp_path, post_processor={"type": "ByteLevel", "trim_offsets": False})
    write_card(card(eos="<eos>", pad="<|pad|>", fim_prefix="<|fim_prefix|>"), tmp_path / CARD_FILE)
    files = {k: json.loads(v) for k, v in hf_tokenizer_files(path, 256).items()}
    config, special = files["tokenizer_config.json"], files["special_tokens_map.json"]
    assert (config["eos_token"], config["bos_token"], config["pad_token"]) == (
        "<eos>", "<eos>", "<|pad|>"
    )  # fmt: skip
    assert special["additional_special_tokens"] == ["<|endoftext|>", "<|fim_prefix|>"]
    assert config["split_special_tokens"] is True and config["model_max_length"] == 256
    assert config["added_tokens_decoder"]["1"]["content"] == "<eos>"
    processor = files["tokenizer.json"]["post_processor"]
    byte_level, template = processor["processors"]
    assert byte_level == {"type": "ByteLevel", "trim_offsets": False}  # the file's own kept
    assert template["single"][0] == {"SpecialToken": {"id": "<eos>", "type_id": 0}}
    assert template["special_tokens"]["<eos>"]["ids"] == [1]
    # an export of an export (hf_to_dcp then dcp_to_hf) prepends EOS once
    exported = tmp_path / "again" / "tokenizer.json"
    exported.parent.mkdir()
    exported.write_bytes(hf_tokenizer_files(path, 256)["tokenizer.json"])
    again = json.loads(hf_tokenizer_files(exported, 256)["tokenizer.json"])
    assert again["post_processor"]["processors"][0] == byte_level
    assert len(again["post_processor"]["processors"]) == 2
