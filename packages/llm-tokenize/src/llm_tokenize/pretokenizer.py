"""The pre-tokenisation presets: how text is split into pieces before BPE merges within them."""

from __future__ import annotations

from tokenizers import Regex, normalizers, pre_tokenizers

from llm_tokenize.config import TokenizerConfig

# GPT-2's split regex (Radford et al. 2019, `encoder.py`), with `{digits}` for the number rule.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?{digits}| ?[^\s\p{{L}}\p{{N}}]+|\s+(?!\S)|\s+"

# GPT-4's (cl100k) split regex, as Llama-3 uses it: case-insensitive contractions, a letter run
# may take one leading non-letter (" word", "'word"), punctuation keeps its trailing newlines.
_GPT4 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+"
    r"|{digits}"
    r"| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)

# Whitespace-preserving, for code: a line break takes the next line's indentation with it (one
# piece per indentation level), other whitespace runs stay whole instead of lending their last
# space to the next word, identifiers keep their underscores, and a single space may lead a word.
_CODE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[\r\n]+[^\S\r\n]*"
    r"| ?[\p{{L}}_][\p{{L}}_]*"
    r"|{digits}"
    r"| ?[^\s\p{{L}}\p{{N}}_]+"
    r"|[^\S\r\n]+"
)

_PATTERNS = {"gpt2": _GPT2, "gpt4": _GPT4, "code": _CODE}


def split_pattern(preset: str, max_digits: int | None) -> str:
    """The split regex of a preset, numbers in groups of at most ``max_digits`` (None: any)."""
    digits = r"\p{N}+" if max_digits is None else rf"\p{{N}}{{1,{max_digits}}}"
    return _PATTERNS[preset].format(digits=digits)


def build_pre_tokenizer(config: TokenizerConfig) -> pre_tokenizers.PreTokenizer:
    """Regex split of the preset, then ByteLevel mapping every byte to a printable symbol."""
    pattern = split_pattern(config.pre_tokenizer, config.max_digits)
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            # The regex already split the text; ByteLevel only maps bytes to symbols.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def build_normalizer(config: TokenizerConfig) -> normalizers.Normalizer | None:
    return normalizers.NFC() if config.nfc else None
