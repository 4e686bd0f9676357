"""A thin wrapper over a Hugging Face `tokenizers.Tokenizer` that meets the stack's protocol."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from llm_tokenize.config import DEFAULT_EOS_TOKEN


class Tokenizer:
    """Byte-level BPE tokenizer: ``encode_batch``, ``decode``, ``eos_id``, ``vocab_size``.

    ``encode`` never adds special tokens, and special-token strings that occur in the text (e.g. a
    literal ``"<|endoftext|>"`` inside a code file) are encoded as ordinary text, so EOS only
    appears where a caller puts it by id. (The flag behind this, ``encode_special_tokens``, is not
    stored in tokenizer.json: other readers of the file must set it themselves.)

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
        hf_tokenizer.encode_special_tokens = True
        self.hf = hf_tokenizer
        self.eos_token = eos_token
        self.eos_id: int = eos_id
        self.vocab_size: int = hf_tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | os.PathLike, eos_token: str = DEFAULT_EOS_TOKEN) -> Tokenizer:
        """Load a HF ``tokenizer.json``.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: If the file is not a valid tokenizer.json or lacks ``eos_token``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception on parse errors
            raise ValueError(f"{path}: not a valid Hugging Face tokenizer.json: {err}") from err
        try:
            return cls(hf, eos_token)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (no special tokens added)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel by `tokenizers`."""
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.hf.to_str(pretty=True))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id})"
