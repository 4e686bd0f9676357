"""The `transformers` files that go beside a tokenizer.json in a Hugging Face model folder.

For a checkpoint converter: ``tokenizer_config.json`` and ``special_tokens_map.json`` so that
``AutoTokenizer.from_pretrained(folder)`` loads the tokenizer with its special tokens named and,
as in this stack, special-token strings inside text encoded as text (``split_special_tokens``).
"""

from __future__ import annotations

import os
from typing import Any

from llm_tokenize.artifacts import read_card
from llm_tokenize.config import DEFAULT_EOS_TOKEN
from llm_tokenize.tokenizer import load_hf_tokenizer

# transformers' keyword for each role a special token can have in the card.
_ROLE_KEYS = {"bos": "bos_token", "eos": "eos_token", "pad": "pad_token"}


def special_token_roles(tokenizer_path: str | os.PathLike) -> dict[str, str]:
    """Role -> token, from the card beside the tokenizer.json, else EOS = `DEFAULT_EOS_TOKEN`."""
    card = read_card(tokenizer_path)
    if card is not None:
        return {role: entry["token"] for role, entry in card["special_tokens"].items()}
    return {"eos": DEFAULT_EOS_TOKEN}


def transformers_tokenizer_files(
    tokenizer_path: str | os.PathLike, model_max_length: int
) -> dict[str, dict[str, Any]]:
    """``{"tokenizer_config.json": {...}, "special_tokens_map.json": {...}}`` for a tokenizer.json.

    Raises:
        ValueError: If a special token of the card is not in the tokenizer's vocabulary.
    """
    hf = load_hf_tokenizer(tokenizer_path)
    roles = special_token_roles(tokenizer_path)
    for role, token in roles.items():
        if hf.token_to_id(token) is None:
            raise ValueError(f"{tokenizer_path}: {role} token {token!r} is not in the vocabulary")
    named = {_ROLE_KEYS[r]: t for r, t in roles.items() if r in _ROLE_KEYS}
    added = hf.get_added_tokens_decoder()
    others = [t.content for _, t in sorted(added.items()) if t.content not in named.values()]
    special_map = {**named, "additional_special_tokens": others}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        **special_map,
        "added_tokens_decoder": {
            str(i): {
                "content": t.content,
                "lstrip": t.lstrip,
                "rstrip": t.rstrip,
                "normalized": t.normalized,
                "single_word": t.single_word,
                "special": t.special,
            }
            for i, t in sorted(added.items())
        },
        "split_special_tokens": True,  # "<|endoftext|>" typed in text stays text
        "clean_up_tokenization_spaces": False,  # decode gives the text back byte for byte
        "add_bos_token": False,
        "add_eos_token": False,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": special_map}
