"""A thin wrapper over a Hugging Face `tokenizers.Tokenizer` that meets the stack's protocol."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from llm_formats.atomic import atomic_write_text
from llm_formats.tokenizer import (
    DEFAULT_EOS_TOKEN,
    SPLIT_SPECIAL_TOKENS,
    TokenizerFormatError,
    read_tokenizer_json,
)
from llm_formats.tokenizer import eos_token as card_eos_token  # `eos_token` is an argument here

# A tokenizer.json that llm-tokenize cannot use; the message names the file and why. A thin
# alias of llm_formats' error, kept because it is llm_tokenize's public API.
TokenizerFileError = TokenizerFormatError


def _types(component: dict[str, Any] | None) -> list[str]:
    """Types of a tokenizer.json component and, for a Sequence, of its parts."""
    if not component:
        return []
    parts = component.get("decoders") or component.get("pretokenizers") or []
    return [component.get("type", "?"), *(t for p in parts for t in _types(p))]


def check_byte_level_bpe(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse tokenizer.json contents that are not byte-level BPE (WordPiece, Unigram, or a BPE
    without ByteLevel pre-tokenisation and decoding, such as SentencePiece-style files): their
    statistics and round trips mean something else, and text may map to an unknown token."""
    model = (data.get("model") or {}).get("type")
    if model != "BPE":
        raise TokenizerFileError(
            f"{path}: model type {model!r} is not supported; llm-tokenize reads byte-level BPE "
            "tokenizer.json files (model BPE, ByteLevel pre-tokenizer and decoder)"
        )
    for part in ("pre_tokenizer", "decoder"):
        if "ByteLevel" not in _types(data.get(part)):
            raise TokenizerFileError(
                f"{path}: {part} {_types(data.get(part)) or None} has no ByteLevel step; "
                "llm-tokenize reads byte-level BPE tokenizer.json files only"
            )


def load_hf_tokenizer(path: str | os.PathLike) -> HFTokenizer:
    """Load a byte-level BPE tokenizer.json whose special-token strings in text stay text
    (`llm_formats.tokenizer.SPLIT_SPECIAL_TOKENS`): llm-tokenize's one loader of the file.

    Raises:
        FileNotFoundError: If the file does not exist.
        TokenizerFileError: If it cannot be read, is no tokenizer.json, or is not byte-level BPE.
    """
    data = read_tokenizer_json(path)
    check_byte_level_bpe(data, path)
    try:
        hf = HFTokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on parse errors
        raise TokenizerFileError(f"{path}: not a valid Hugging Face tokenizer.json: {err}") from err
    # Not stored in tokenizer.json: every reader must set it (see `Tokenizer`).
    hf.encode_special_tokens = SPLIT_SPECIAL_TOKENS
    return hf


class Tokenizer:
    """Byte-level BPE tokenizer: ``encode_batch``, ``decode``, ``eos_id``, ``vocab_size``.

    ``encode`` never adds special tokens, and special-token strings that occur in the text (e.g. a
    literal EOS string inside a code file) are encoded as ordinary text, so EOS only
    appears where a caller puts it by id (`token_id` gives the ids of BOS, pad, FIM, ...). The
    flag behind this, `tokenizers`' ``encode_special_tokens``, is not stored in tokenizer.json:
    `load_hf_tokenizer` and `Tokenizer.from_file` set it, other readers of the file must too.

    Args:
        hf_tokenizer: The underlying `tokenizers.Tokenizer`.
        eos_token: The end-of-text token; must be in the vocabulary.

    Raises:
        ValueError: If ``eos_token`` is not in the vocabulary.
    """

    def __init__(self, hf_tokenizer: HFTokenizer, eos_token: str = DEFAULT_EOS_TOKEN) -> None:
        eos_id = hf_tokenizer.token_to_id(eos_token)
        if eos_id is None:
            raise ValueError(f"EOS token {eos_token!r} is not in the tokenizer's vocabulary")
        hf_tokenizer.encode_special_tokens = SPLIT_SPECIAL_TOKENS
        self.hf = hf_tokenizer
        self.eos_token = eos_token
        self.eos_id: int = eos_id
        self.vocab_size: int = hf_tokenizer.get_vocab_size(with_added_tokens=True)

    def __setstate__(self, state: dict) -> None:
        # tokenizers' pickle (and so deepcopy, and a datatrove task's copy) drops the flag.
        self.__dict__.update(state)
        self.hf.encode_special_tokens = SPLIT_SPECIAL_TOKENS

    @classmethod
    def from_file(cls, path: str | os.PathLike, eos_token: str | None = None) -> Tokenizer:
        """Load a byte-level BPE ``tokenizer.json`` (see `load_hf_tokenizer`) with the EOS its
        card records (`llm_formats.tokenizer.eos_token`), unless ``eos_token`` is given.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: If the file is not a byte-level BPE tokenizer.json or lacks its EOS.
        """
        hf = load_hf_tokenizer(path)
        eos = eos_token if eos_token is not None else card_eos_token(path)
        try:
            return cls(hf, eos)
        except ValueError as err:
            raise TokenizerFileError(f"{path}: {err}") from err

    def token_id(self, token: str) -> int:
        """Id of a (special) token; KeyError naming it when it is not in the vocabulary."""
        token_id = self.hf.token_to_id(token)
        if token_id is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return token_id

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (no special tokens added)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel by `tokenizers` (Rust threads)."""
        # encode_batch_fast skips offset tracking (tokenizers >= 0.21); older versions lack it.
        encode = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        encodings = encode(list(texts), add_special_tokens=False)
        return [enc.ids for enc in encodings]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Text of token ids; special tokens are kept unless ``skip_special_tokens``."""
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a standard HF tokenizer.json atomically (temp file in its folder, then rename).

        Returns:
            The path written.
        """
        return atomic_write_text(Path(path), self.hf.to_str(pretty=True))

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id})"
