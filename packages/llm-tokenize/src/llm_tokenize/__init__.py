"""llm-tokenize: byte-level BPE training and tokenizer statistics."""

from llm_tokenize.artifacts import CARD_FILE, TOKENIZER_FILE, read_card, train_from_config
from llm_tokenize.config import (
    DEFAULT_EOS_TOKEN,
    FIM_TOKENS,
    TokenizerConfig,
    TrainingSource,
)
from llm_tokenize.corpus import CorpusError, Document
from llm_tokenize.report import compare, corpus_report, to_csv, to_markdown
from llm_tokenize.stats import (
    bytes_per_token,
    chars_per_token,
    fertility,
    format_report,
    group_stats,
    tokenizer_report,
)
from llm_tokenize.tokenizer import Tokenizer, TokenizerFileError, load_hf_tokenizer
from llm_tokenize.training import train_tokenizer

__all__ = [
    "CARD_FILE",
    "DEFAULT_EOS_TOKEN",
    "FIM_TOKENS",
    "TOKENIZER_FILE",
    "CorpusError",
    "Document",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerFileError",
    "TrainingSource",
    "bytes_per_token",
    "chars_per_token",
    "compare",
    "corpus_report",
    "fertility",
    "format_report",
    "group_stats",
    "load_hf_tokenizer",
    "read_card",
    "to_csv",
    "to_markdown",
    "tokenizer_report",
    "train_from_config",
    "train_tokenizer",
]
