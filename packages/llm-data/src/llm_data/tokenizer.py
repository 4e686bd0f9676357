"""llm-data's one loader of a ``tokenizer.json`` (for the `llm-data shards` and `inspect` CLIs).

llm-data may not import llm-tokenize, so it loads the file with `tokenizers` itself (a
dependency of datatrove and of the [shards] extra), reading the EOS and the rule that
special-token strings in text stay text from `llm_formats.tokenizer`: the shards and the token
counts of `inspect` then encode exactly as `llm_tokenize.Tokenizer` does.
"""

from __future__ import annotations

import os
from pathlib import Path

from llm_formats.tokenizer import (
    SPLIT_SPECIAL_TOKENS,
    TokenizerFormatError,
    read_tokenizer_json,
    vocabulary,
)
from llm_formats.tokenizer import eos_token as card_eos_token  # `eos_token` is an argument here


class FileTokenizer:
    """A tokenizer.json behind the protocol `tokenize_to_shards` takes: ``encode_batch`` adds no
    special token, ``eos_id`` (the card's EOS) goes between documents, ``vocab_size``."""

    def __init__(self, path: Path, eos_token: str) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.encode_special_tokens = SPLIT_SPECIAL_TOKENS  # not stored in the file
        self.eos_id: int = self._tok.token_to_id(eos_token)
        self.vocab_size: int = self._tok.get_vocab_size(with_added_tokens=True)

    def __setstate__(self, state: dict) -> None:
        # tokenizers' pickle (and so deepcopy, and a datatrove task's copy) drops the flag.
        self.__dict__.update(state)
        self._tok.encode_special_tokens = SPLIT_SPECIAL_TOKENS

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]


def load_tokenizer(path: str | os.PathLike, eos_token: str | None = None) -> FileTokenizer:
    """Load ``path`` with the EOS its card records, unless ``eos_token`` is given.

    Raises:
        FileNotFoundError: If there is no such file.
        TokenizerFormatError: If it is no tokenizer.json or lacks the EOS (names both).
    """
    if eos_token is None:
        eos_token = card_eos_token(path)
    elif eos_token not in vocabulary(read_tokenizer_json(path)):
        raise TokenizerFormatError(f"{path}: EOS token {eos_token!r} is not in its vocabulary")
    return FileTokenizer(Path(path), eos_token)
