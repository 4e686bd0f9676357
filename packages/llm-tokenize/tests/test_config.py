from dataclasses import asdict

import pytest

from llm_tokenize import TokenizerConfig


def test_defaults_and_special_token_order():
    config = TokenizerConfig(pad_token="<|pad|>", extra_special_tokens=("<|a|>",))
    assert config.special_tokens == ("<|endoftext|>", "<|pad|>", "<|a|>")
    assert TokenizerConfig().special_tokens == ("<|endoftext|>",)
    full = TokenizerConfig(
        bos_token="<s>", pad_token="<pad>", fim=True, extra_special_tokens=("<x>",)
    )
    assert full.special_tokens == (
        "<|endoftext|>", "<s>", "<pad>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<x>"
    )  # fmt: skip
    assert full.special_token_roles["fim_suffix"] == "<|fim_suffix|>"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vocab_size": 100}, "vocab_size"),
        ({"min_frequency": 0}, "min_frequency"),
        ({"max_docs": 0}, "max_docs"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"eos_token": ""}, "eos_token"),
        ({"pad_token": "<|endoftext|>"}, "distinct"),
        ({"bos_token": "<|fim_prefix|>", "fim": True}, "distinct"),
        ({"pre_tokenizer": "gpt5"}, "pre_tokenizer"),
        ({"max_digits": 4}, "max_digits"),
        (
            {"sources": [{"name": "a", "proportion": 0.5}, {"name": "b"}]},
            "every source or for none",
        ),
        (
            {"sources": [{"name": "a", "proportion": 0.5}, {"name": "b", "proportion": 0.4}]},
            "sum to 1",
        ),
        ({"sources": [{"name": "a"}, {"name": "a"}]}, "distinct"),
        ({"sources": [{"name": "a", "proportion": 0}]}, "proportion"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TokenizerConfig(**kwargs)


def test_vocab_must_hold_bytes_and_specials():
    TokenizerConfig(vocab_size=257)
    with pytest.raises(ValueError, match=">= 258"):
        TokenizerConfig(vocab_size=257, pad_token="<pad>")
    with pytest.raises(ValueError, match=r">= 262 \(256 byte symbols \+ 6 special tokens\)"):
        TokenizerConfig(vocab_size=261, bos_token="<s>", pad_token="<pad>", fim=True)


def test_omegaconf_round_trip():
    omegaconf = pytest.importorskip("omegaconf")
    OmegaConf = omegaconf.OmegaConf
    schema = OmegaConf.structured(TokenizerConfig)
    merged = OmegaConf.merge(
        schema, OmegaConf.create({"vocab_size": 4096, "extra_special_tokens": ["<|x|>"]})
    )
    config = OmegaConf.to_object(merged)
    assert isinstance(config, TokenizerConfig)
    assert config.vocab_size == 4096 and config.extra_special_tokens == ("<|x|>",)
    again = OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.create(asdict(config))))
    assert again == config
    with pytest.raises(omegaconf.errors.ConfigKeyError):
        OmegaConf.merge(schema, OmegaConf.create({"vocab_sise": 1}))
