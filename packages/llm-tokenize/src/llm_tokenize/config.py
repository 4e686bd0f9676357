"""Configuration of byte-level BPE tokenizer training."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from llm_formats.tokenizer import DEFAULT_EOS_TOKEN  # the one definition; re-exported

# 256 byte symbols form the initial alphabet of a byte-level BPE.
BYTE_ALPHABET_SIZE = 256
# Fill-in-the-middle sentinels (Bavarian et al. 2022), in the order prefix, middle, suffix.
FIM_TOKENS = ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>")

PreTokenizer = Literal["gpt2", "gpt4", "code"]
PRE_TOKENIZERS = ("gpt2", "gpt4", "code")


@dataclass(kw_only=True)
class TrainingSource:
    """One source of training text: curated JSONL (datatrove Documents), gzip or not.

    Attributes:
        name: Name of the source in the card and the statistics.
        paths: JSONL / JSONL.gz files, folders (every ``*.jsonl`` and ``*.jsonl.gz`` below them)
            or glob patterns. Empty is allowed in a config that a caller fills in (the pretrain
            app reads the curated output of the data source of the same name).
        proportion: Share of the training bytes taken from this source: a small source is
            repeated and a large one subsampled to reach it. None in every source: all text once.
    """

    name: str
    paths: list[str] = field(default_factory=list)
    proportion: float | None = None

    def __post_init__(self) -> None:
        self.paths = list(self.paths)
        if not self.name:
            raise ValueError("TrainingSource.name: got an empty string; a name is required")
        if self.proportion is not None and not (0 < self.proportion <= 1):
            raise ValueError(
                f"TrainingSource[{self.name}].proportion: got {self.proportion}; "
                "must be in (0, 1] or None"
            )


@dataclass(kw_only=True)
class TokenizerConfig:
    """What `train_tokenizer` builds.

    Special tokens take the lowest ids in this order: ``eos_token`` (id 0), ``bos_token``,
    ``pad_token``, the three FIM sentinels (when ``fim``), then ``extra_special_tokens``. The 256
    byte symbols follow, then the learned merges.

    Attributes:
        vocab_size: Total vocabulary size including special tokens and the 256 byte symbols.
        min_frequency: A pair must occur at least this often to be merged.
        pre_tokenizer: How text is split before BPE: "gpt2" (GPT-2's regex), "gpt4" (cl100k's
            regex) or "code" (cl100k-like, but a line break keeps the next line's indentation
            and whitespace runs stay whole).
        max_digits: Numbers split into groups of at most this many digits (1-3; GPT-4 uses 3,
            Llama-1/2 1); None: digits are not split (GPT-2).
        nfc: NFC-normalise text before splitting. Off by default, so that
            ``decode(encode(x)) == x`` byte for byte; on, it holds for ``NFC(x)``.
        eos_token: End-of-text token; documents are separated by it (id 0).
        bos_token: Optional beginning-of-text token.
        pad_token: Optional padding token.
        fim: Reserve the fill-in-the-middle tokens `FIM_TOKENS`.
        extra_special_tokens: More reserved special tokens, after the others.
        sources: Training text for `train_from_config` and the CLI (ignored by
            `train_tokenizer`, which takes texts).
        max_docs: Stop reading training texts after this many documents (None: no limit).
        max_bytes: Training text budget in UTF-8 bytes (None: no limit). With proportions it is
            the mixture's total size (default: the sum of the sources' sizes).
        show_progress: Show the `tokenizers` progress bars while counting and merging.
    """

    vocab_size: int = 8192
    min_frequency: int = 2
    pre_tokenizer: PreTokenizer = "gpt4"
    max_digits: int | None = 1
    nfc: bool = False
    eos_token: str = DEFAULT_EOS_TOKEN
    bos_token: str | None = None
    pad_token: str | None = None
    fim: bool = False
    extra_special_tokens: tuple[str, ...] = ()
    sources: list[TrainingSource] = field(default_factory=list)
    max_docs: int | None = None
    max_bytes: int | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.extra_special_tokens = tuple(self.extra_special_tokens)
        self.sources = [
            s if isinstance(s, TrainingSource) else TrainingSource(**s) for s in self.sources
        ]
        self._check_special_tokens()
        if self.pre_tokenizer not in PRE_TOKENIZERS:
            raise ValueError(
                f"TokenizerConfig.pre_tokenizer: got {self.pre_tokenizer!r}; "
                f"must be one of {', '.join(PRE_TOKENIZERS)}"
            )
        if self.max_digits is not None and not 1 <= self.max_digits <= 3:
            raise ValueError(
                f"TokenizerConfig.max_digits: got {self.max_digits}; must be 1, 2, 3 or None"
            )
        if self.min_frequency < 1:
            raise ValueError(
                f"TokenizerConfig.min_frequency: got {self.min_frequency}; must be >= 1"
            )
        for name in ("max_docs", "max_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TokenizerConfig.{name}: got {value}; must be >= 1 or None")
        self._check_sources()

    def _check_special_tokens(self) -> None:
        specials = self.special_tokens
        if not self.eos_token:
            raise ValueError("TokenizerConfig.eos_token: got an empty string; a token is required")
        if len(set(specials)) != len(specials):
            raise ValueError(
                f"TokenizerConfig special tokens must be distinct; got {specials} "
                "(eos_token, bos_token, pad_token, FIM tokens, extra_special_tokens)"
            )
        if any(not tok for tok in specials):
            raise ValueError(f"TokenizerConfig special tokens must be non-empty; got {specials}")
        smallest = BYTE_ALPHABET_SIZE + len(specials)
        if self.vocab_size < smallest:
            raise ValueError(
                f"TokenizerConfig.vocab_size: got {self.vocab_size}; must be >= {smallest} "
                f"(256 byte symbols + {len(specials)} special tokens)"
            )

    def _check_sources(self) -> None:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"TokenizerConfig.sources: names must be distinct; got {names}")
        given = [s.proportion is not None for s in self.sources]
        if any(given) and not all(given):
            raise ValueError(
                "TokenizerConfig.sources: give a proportion for every source or for none; got "
                + ", ".join(f"{s.name}={s.proportion}" for s in self.sources)
            )
        if all(given) and self.sources:
            total = sum(s.proportion for s in self.sources)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(
                    f"TokenizerConfig.sources: proportions must sum to 1; got {total:g}"
                )

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Special tokens in id order: EOS, BOS, pad, FIM prefix/middle/suffix, extras."""
        optional = (self.bos_token, self.pad_token)
        fim = FIM_TOKENS if self.fim else ()
        present = tuple(t for t in optional if t is not None)
        return (self.eos_token, *present, *fim, *self.extra_special_tokens)

    @property
    def special_token_roles(self) -> dict[str, str]:
        """Role -> token for the special tokens that have one (eos, bos, pad, fim_*)."""
        roles = {"eos": self.eos_token, "bos": self.bos_token, "pad": self.pad_token}
        if self.fim:
            roles |= dict(zip(("fim_prefix", "fim_middle", "fim_suffix"), FIM_TOKENS, strict=True))
        return {role: tok for role, tok in roles.items() if tok is not None}


# TokenizerConfig fields that do not change the trained tokenizer (a pipeline re-running stages
# when their config changes leaves these out of its record).
RUNTIME_FIELDS = frozenset({"show_progress"})
