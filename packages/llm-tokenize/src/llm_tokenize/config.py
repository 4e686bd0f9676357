"""Configuration of byte-level BPE tokenizer training."""

from __future__ import annotations

from dataclasses import dataclass

# 256 byte symbols form the initial alphabet of a byte-level BPE.
BYTE_ALPHABET_SIZE = 256
# The stack's one definition of the end-of-text string (documents are separated by its id).
DEFAULT_EOS_TOKEN = "<|endoftext|>"


@dataclass(kw_only=True)
class TokenizerConfig:
    """What `train_tokenizer` builds.

    Special tokens take the lowest ids in this order: ``eos_token`` (id 0), then ``pad_token`` if
    set, then ``extra_special_tokens``. The 256 byte symbols follow, then the learned merges.

    Attributes:
        vocab_size: Total vocabulary size including special tokens and the 256 byte symbols.
        min_frequency: A pair must occur at least this often to be merged.
        eos_token: End-of-text token; documents are separated by it (id 0).
        pad_token: Optional padding token (id 1 when set); None for no pad token.
        extra_special_tokens: More reserved special tokens, after EOS and pad.
        max_docs: Stop reading training texts after this many documents (None: no limit).
        max_bytes: Stop reading training texts after this many UTF-8 bytes (None: no limit).
        show_progress: Show the `tokenizers` progress bars while counting and merging.
    """

    vocab_size: int = 8192
    min_frequency: int = 2
    eos_token: str = DEFAULT_EOS_TOKEN
    pad_token: str | None = None
    extra_special_tokens: tuple[str, ...] = ()
    max_docs: int | None = None
    max_bytes: int | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.extra_special_tokens = tuple(self.extra_special_tokens)
        specials = self.special_tokens
        if not self.eos_token:
            raise ValueError("TokenizerConfig.eos_token: got an empty string; a token is required")
        if len(set(specials)) != len(specials):
            raise ValueError(
                f"TokenizerConfig special tokens must be distinct; got {specials} "
                "(eos_token, pad_token, extra_special_tokens)"
            )
        if any(not tok for tok in specials):
            raise ValueError(f"TokenizerConfig special tokens must be non-empty; got {specials}")
        smallest = BYTE_ALPHABET_SIZE + len(specials)
        if self.vocab_size < smallest:
            raise ValueError(
                f"TokenizerConfig.vocab_size: got {self.vocab_size}; must be >= {smallest} "
                f"(256 byte symbols + {len(specials)} special tokens)"
            )
        if self.min_frequency < 1:
            raise ValueError(
                f"TokenizerConfig.min_frequency: got {self.min_frequency}; must be >= 1"
            )
        for name in ("max_docs", "max_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TokenizerConfig.{name}: got {value}; must be >= 1 or None")

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Special tokens in id order: EOS, pad (if any), extras."""
        pad = () if self.pad_token is None else (self.pad_token,)
        return (self.eos_token, *pad, *self.extra_special_tokens)
