import pytest

from llm_tokenize import TokenizerConfig, train_tokenizer, transformers_tokenizer_files
from llm_tokenize.artifacts import CARD_FILE, write_card


@pytest.fixture
def tokenizer_dir(shakespeare, tmp_path):
    config = TokenizerConfig(
        vocab_size=400, bos_token="<|bos|>", pad_token="<|pad|>", fim=True, show_progress=False
    )
    tok = train_tokenizer(shakespeare[:1], config)
    tok.save(tmp_path / "tokenizer.json")
    roles = {r: {"token": t, "id": tok.token_id(t)} for r, t in config.special_token_roles.items()}
    write_card({"special_tokens": roles}, tmp_path / CARD_FILE)
    return tmp_path


def test_files_name_the_special_tokens(tokenizer_dir):
    files = transformers_tokenizer_files(tokenizer_dir / "tokenizer.json", model_max_length=256)
    config = files["tokenizer_config.json"]
    assert (config["eos_token"], config["bos_token"], config["pad_token"]) == (
        "<|endoftext|>", "<|bos|>", "<|pad|>"
    )  # fmt: skip
    assert config["additional_special_tokens"] == [
        "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"
    ]  # fmt: skip
    assert config["added_tokens_decoder"]["0"]["content"] == "<|endoftext|>"
    assert config["split_special_tokens"] is True and config["model_max_length"] == 256
    assert files["special_tokens_map.json"]["eos_token"] == "<|endoftext|>"


def test_without_a_card_eos_is_the_default(tokenizer_dir):
    (tokenizer_dir / CARD_FILE).unlink()
    config = transformers_tokenizer_files(tokenizer_dir / "tokenizer.json", 64)
    assert config["tokenizer_config.json"]["eos_token"] == "<|endoftext|>"
    assert "bos_token" not in config["tokenizer_config.json"]


def test_transformers_loads_them_like_the_stack_encodes(tokenizer_dir):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    import json

    for name, content in transformers_tokenizer_files(
        tokenizer_dir / "tokenizer.json", 256
    ).items():
        (tokenizer_dir / name).write_text(json.dumps(content))
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    from llm_tokenize import Tokenizer

    ours = Tokenizer.from_file(tokenizer_dir / "tokenizer.json")
    text = "to be <|endoftext|> or not\n  to be"
    assert hf(text)["input_ids"] == ours.encode(text)
    assert (hf.eos_token_id, hf.bos_token_id, hf.pad_token_id) == (0, 1, 2)
    assert hf.decode(ours.encode(text)) == text
