"""llm-tokenize: byte-level BPE training and tokenizer statistics."""

from llm_tokenize.config import DEFAULT_EOS_TOKEN, TokenizerConfig
from llm_tokenize.stats import (
    bytes_per_token,
    chars_per_token,
    fertility,
    format_report,
    tokenizer_report,
)
from llm_tokenize.tokenizer import Tokenizer
from llm_tokenize.training import train_tokenizer

__all__ = [
    "DEFAULT_EOS_TOKEN",
    "Tokenizer",
    "TokenizerConfig",
    "bytes_per_token",
    "chars_per_token",
    "fertility",
    "format_report",
    "tokenizer_report",
    "train_tokenizer",
]
