"""The tokenizer seam: ``tokenizer.json``, its card, the special-token roles and the HF files.

A run's tokenizer is a Hugging Face ``tokenizer.json`` (byte-level BPE) with a
``tokenizer_card.json`` beside it, written by llm-tokenize. The card records, among its settings
and statistics, every special token by role (``{"eos": {"token": ..., "id": ...}, ...}``); the
EOS every reader uses is the card's, so a tokenizer trained with another ``eos_token`` is read
with that one. Only a tokenizer.json without a card falls back to `DEFAULT_EOS_TOKEN`.

Two rules of the stack hold for every reader and writer here:

- special-token strings inside a text encode as text (`SPLIT_SPECIAL_TOKENS`: a literal
  EOS string in a code file is no document boundary); `tokenizers` does not store this
  in tokenizer.json, so each loader sets it and the transformers files say so;
- every training document follows an EOS (the shards put one after each document, and llm-eval
  scores ``[EOS] + context``), so an exported tokenizer prepends EOS to every text
  (`hf_tokenizer_files`).

Loading a tokenizer.json into a `tokenizers.Tokenizer` needs `tokenizers`, so it happens in the
packages that may use it, one loader each (``llm_tokenize.load_hf_tokenizer``,
``llm_data.tokenizer.load_tokenizer``); they read EOS and the split rule from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_text

__all__ = [
    "CARD_FILE",
    "DEFAULT_EOS_TOKEN",
    "SPLIT_SPECIAL_TOKENS",
    "TOKENIZER_FILE",
    "TokenizerFormatError",
    "card_path",
    "eos_token",
    "hf_tokenizer_files",
    "read_card",
    "read_tokenizer_json",
    "role_ids",
    "special_token_roles",
    "validate_card",
    "vocabulary",
    "write_card",
]

TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "tokenizer_card.json"
DEFAULT_EOS_TOKEN = "<|endoftext|>"
SPLIT_SPECIAL_TOKENS = True  # special-token strings in text encode as text (see the docstring)

# transformers' keyword for each role a token can have in the card
_HF_ROLE_KEYS = {"eos": "eos_token", "pad": "pad_token"}
_ADDED_TOKEN_FLAGS = ("content", "lstrip", "rstrip", "normalized", "single_word", "special")


class TokenizerFormatError(ValueError):
    """A tokenizer.json or card that cannot be used; the message names the file and field."""


def card_path(tokenizer_path: str | os.PathLike) -> Path:
    """The card's path: ``tokenizer_card.json`` in the tokenizer.json's folder."""
    return Path(tokenizer_path).with_name(CARD_FILE)


def validate_card(card: Any, path: str | os.PathLike) -> dict[str, Any]:
    """Return ``card`` if its ``special_tokens`` map each role to ``{"token": str, "id": int}``
    and name an ``eos``: the fields every reader relies on.

    Raises:
        TokenizerFormatError: naming the file and the field.
    """
    if not isinstance(card, dict):
        raise TokenizerFormatError(f"{path}: a tokenizer card is a JSON object")
    specials = card.get("special_tokens")
    if not isinstance(specials, dict) or "eos" not in specials:
        raise TokenizerFormatError(f"{path}: special_tokens has no 'eos' role: {specials!r}")
    for role, entry in specials.items():
        ok = isinstance(entry, dict) and isinstance(entry.get("token"), str)
        if not ok or not isinstance(entry.get("id"), int):
            raise TokenizerFormatError(
                f"{path}: special_tokens.{role} must be {{'token': str, 'id': int}}, got {entry!r}"
            )
    return card


def write_card(card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate and write a card atomically (indented, UTF-8 kept as is); return the path."""
    validate_card(card, path)
    return atomic_write_text(path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def read_card(tokenizer_path: str | os.PathLike) -> dict[str, Any] | None:
    """The validated card beside a tokenizer.json, or None when there is none.

    Raises:
        TokenizerFormatError: If the card is no JSON or lacks the roles (names the file).
    """
    path = card_path(tokenizer_path)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerFormatError(f"{path}: not a JSON tokenizer card: {err}") from err
    return validate_card(card, path)


def special_token_roles(tokenizer_path: str | os.PathLike) -> dict[str, str]:
    """Role -> token (eos, and bos, pad, fim_* where configured), from the card; without a card
    only ``{"eos": DEFAULT_EOS_TOKEN}``."""
    card = read_card(tokenizer_path)
    if card is None:
        return {"eos": DEFAULT_EOS_TOKEN}
    return {role: entry["token"] for role, entry in card["special_tokens"].items()}


def read_tokenizer_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed tokenizer.json (an object with a ``model``).

    Raises:
        FileNotFoundError: If there is no such file.
        TokenizerFormatError: If it is no JSON object with a model (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerFormatError(f"{path}: cannot read a tokenizer.json: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TokenizerFormatError(f"{path}: not a Hugging Face tokenizer.json (no model object)")
    return data


def vocabulary(data: dict[str, Any]) -> dict[str, int]:
    """Token -> id of a parsed tokenizer.json: the model's vocabulary and the added tokens."""
    vocab = dict(data["model"].get("vocab") or {})
    vocab.update({t["content"]: t["id"] for t in data.get("added_tokens") or []})
    return vocab


def eos_token(tokenizer_path: str | os.PathLike) -> str:
    """The EOS string to read ``tokenizer_path`` with: the card's, else `DEFAULT_EOS_TOKEN`.

    Raises:
        TokenizerFormatError: If that token is not in the tokenizer's vocabulary (names the file
            and where the token came from).
    """
    token = special_token_roles(tokenizer_path)["eos"]
    if token not in vocabulary(read_tokenizer_json(tokenizer_path)):
        source = card_path(tokenizer_path) if card_path(tokenizer_path).is_file() else "default"
        raise TokenizerFormatError(
            f"{tokenizer_path}: EOS token {token!r} (from {source}) is not in its vocabulary"
        )
    return token


def _prepend_eos(data: dict[str, Any], eos: str, eos_id: int) -> dict[str, Any]:
    """``data`` with a TemplateProcessing post-processor that puts EOS before every text (and
    each of a pair), after the file's own post-processor; an earlier one of ours is replaced, so
    exporting an imported tokenizer does not prepend twice."""
    template = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": eos, "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": eos, "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": eos, "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}},
    }  # fmt: skip
    own = data.get("post_processor")
    parts = own["processors"] if own and own.get("type") == "Sequence" else [own]
    parts = [p for p in parts if p and p.get("type") != "TemplateProcessing"]
    processor = {"type": "Sequence", "processors": [*parts, template]} if parts else template
    return {**data, "post_processor": processor}


def _added_tokens_decoder(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(t["id"]): {k: t[k] for k in _ADDED_TOKEN_FLAGS if k in t}
        for t in sorted(data.get("added_tokens") or [], key=lambda t: t["id"])
    }


def role_ids(tokenizer_path: str | os.PathLike, roles: dict[str, str]) -> dict[str, int]:
    """Role -> id of each role's token in ``tokenizer_path``.

    Raises:
        TokenizerFormatError: If a role's token is not in the vocabulary (names file and role).
    """
    vocab = vocabulary(read_tokenizer_json(tokenizer_path))
    for role, token in roles.items():
        if token not in vocab:
            raise TokenizerFormatError(
                f"{tokenizer_path}: {role} token {token!r} is not in the vocabulary"
            )
    return {role: vocab[token] for role, token in roles.items()}


def hf_tokenizer_files(
    tokenizer_path: str | os.PathLike, model_max_length: int, roles: dict[str, str] | None = None
) -> dict[str, bytes]:
    """The tokenizer files of a Hugging Face model folder, so that ``AutoTokenizer`` encodes as
    training did: ``tokenizer.json`` (prepending EOS, see `_prepend_eos`),
    ``tokenizer_config.json`` (``split_special_tokens``; EOS also named as BOS, the token that
    starts every text) and ``special_tokens_map.json``.

    Args:
        tokenizer_path: The run's tokenizer.json.
        model_max_length: The model's longest input.
        roles: Role -> token (needs ``eos``); default `special_token_roles` (the card's).

    Raises:
        TokenizerFormatError: If a role's token is not in the vocabulary (names file and role).
    """
    data = read_tokenizer_json(tokenizer_path)
    roles = roles if roles is not None else special_token_roles(tokenizer_path)
    ids = role_ids(tokenizer_path, roles)
    named = {_HF_ROLE_KEYS[r]: t for r, t in roles.items() if r in _HF_ROLE_KEYS}
    named["bos_token"] = roles["eos"]
    added = [t["content"] for t in data.get("added_tokens") or []]
    others = [t for t in added if t not in named.values()]
    special_map = {**named, "additional_special_tokens": others}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "model_input_names": ["input_ids", "attention_mask"],  # no token_type_ids for generate()
        **special_map,
        "added_tokens_decoder": _added_tokens_decoder(data),
        "split_special_tokens": SPLIT_SPECIAL_TOKENS,
        "clean_up_tokenization_spaces": False,  # decode gives the text back byte for byte
        "add_bos_token": True,  # done by tokenizer.json's post-processor (bos_token = EOS)
        "add_eos_token": False,
    }
    exported = _prepend_eos(data, roles["eos"], ids["eos"])
    return {
        TOKENIZER_FILE: (json.dumps(exported, indent=2, ensure_ascii=False) + "\n").encode(),
        "tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "special_tokens_map.json": (json.dumps(special_map, indent=2) + "\n").encode(),
    }
