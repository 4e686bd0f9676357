"""The tokenizer files of a Hugging Face export, from the run's ``tokenizer.json``.

Special tokens are read from the file's ``added_tokens`` (not through llm_tokenize), so the
export depends only on the file format. Our tokenizers have no BOS token: documents are packed
with EOS between them, so EOS is what precedes every document and is exported as BOS too (the
GPT-2 convention). Nothing is added around encoded text (``add_bos_token``/``add_eos_token``
false), as in training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SpecialTokens", "read_special_tokens", "tokenizer_files"]

DEFAULT_EOS = "<|endoftext|>"  # llm_tokenize's default eos_token


@dataclass(frozen=True)
class SpecialTokens:
    """EOS (also BOS) and the optional pad token, with their ids."""

    eos: str
    eos_id: int
    pad: str | None = None
    pad_id: int | None = None


def _added_tokens(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
        return {t["content"]: t["id"] for t in data["added_tokens"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: not a Hugging Face tokenizer.json with added_tokens ({e})"
        ) from None


def read_special_tokens(path: Path, eos_token: str, pad_token: str | None = None) -> SpecialTokens:
    """The ids of ``eos_token`` and ``pad_token`` in ``path``'s added_tokens.

    Raises:
        ValueError: naming the file, the missing token and the tokens it has.
    """
    added = _added_tokens(path)
    for role, token in (("eos", eos_token), ("pad", pad_token)):
        if token is not None and token not in added:
            raise ValueError(
                f"{path}: {role} token {token!r} is not among its added_tokens {sorted(added)}"
            )
    pad_id = added[pad_token] if pad_token is not None else None
    return SpecialTokens(eos_token, added[eos_token], pad_token, pad_id)


def tokenizer_files(path: Path, special: SpecialTokens, max_seq_len: int) -> dict[str, bytes]:
    """tokenizer.json (copied), tokenizer_config.json and special_tokens_map.json."""
    data = json.loads(path.read_text())
    decoder = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                         "single_word", "special") if k in t}
        for t in data["added_tokens"]
    }  # fmt: skip
    tokens = {"bos_token": special.eos, "eos_token": special.eos}
    if special.pad is not None:
        tokens["pad_token"] = special.pad
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **tokens,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": max_seq_len,
        "model_input_names": ["input_ids", "attention_mask"],  # no token_type_ids for generate()
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": decoder,
    }
    return {
        "tokenizer.json": path.read_bytes(),
        "tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "special_tokens_map.json": (json.dumps(tokens, indent=2) + "\n").encode(),
    }
