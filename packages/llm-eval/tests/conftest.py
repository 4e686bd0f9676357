"""Tiny tokenizers and hand-made models whose scores are known exactly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

SAMPLE = Path(__file__).parents[3] / "data" / "sample"
TASKS = ("arc_easy", "hellaswag", "lambada", "piqa", "sciq")


class ByteTokenizer:
    """Token = UTF-8 byte (ids 0-255), EOS = 256: tokens and bytes coincide."""

    eos_id = 256
    vocab_size = 257

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class UniformModel(nn.Module):
    """All-zero logits: every token has probability 1/V."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*input_ids.shape, self.vocab_size) + 0 * self.dummy


class UnigramModel(nn.Module):
    """The same logits at every position, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*input_ids.shape, -1)


class NextByteModel(nn.Module):
    """Predicts token ``x + 1`` after ``x`` with logit 10 (all others 0)."""

    def __init__(self, vocab_size: int = 257) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        nxt = (input_ids + 1) % self.vocab_size
        return 10.0 * nn.functional.one_hot(nxt, self.vocab_size).float() + 0 * self.dummy


class CausalMeanModel(nn.Module):
    """Random causal model: logits from the running mean of embeddings (depends on context)."""

    def __init__(self, vocab_size: int = 257, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(vocab_size, dim)
        self.out = nn.Linear(dim, vocab_size)
        self.drop = nn.Dropout(0.5)  # must be off in eval mode or scores would be random
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(vocab_size, dim, generator=gen))
            self.out.weight.copy_(torch.randn(vocab_size, dim, generator=gen))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(input_ids)  # (B, T, D)
        counts = torch.arange(1, input_ids.shape[1] + 1).view(1, -1, 1)
        return self.out(self.drop(x.cumsum(1) / counts))  # (B, T, V)


class TinyAttention(nn.Module):
    """One causal attention layer with learned positions; accepts ``positions`` / ``attn_mask``
    like llm_model.Transformer, so the packed path (contexts shared by choices) can be tested."""

    def __init__(self, vocab_size: int = 257, dim: int = 16, max_len: int = 512) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.pos = nn.Embedding(vocab_size, dim), nn.Embedding(max_len, dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, vocab_size)

    def forward(self, input_ids, positions=None, attn_mask=None):
        return self.out(self.hidden_states(input_ids, positions=positions, attn_mask=attn_mask))

    def hidden_states(self, input_ids, positions=None, attn_mask=None):
        T = input_ids.shape[1]
        if positions is None:
            positions = torch.arange(T).expand_as(input_ids)
        x = self.emb(input_ids) + self.pos(positions)
        q, k, v = self.qkv(x).chunk(3, -1)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask = causal if attn_mask is None else causal & attn_mask
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return x + y

    def logits(self, h):
        return self.out(h)


class TinyAttentionKeep(TinyAttention):
    """Also takes ``keep`` ((N, 2) positions) in ``hidden_states`` and returns (N, d) there, as
    llm_model.Transformer does (its last FFN then runs on those positions only)."""

    def hidden_states(self, input_ids, positions=None, attn_mask=None, keep=None):
        h = super().hidden_states(input_ids, positions=positions, attn_mask=attn_mask)
        return h if keep is None else h[keep[:, 0], keep[:, 1]]


class TinyAttentionNoHead(nn.Module):
    """The same model behind a plain forward (no ``hidden_states`` / ``logits``): scored through
    full logits."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TinyAttention()

    def forward(self, input_ids, positions=None, attn_mask=None):
        return self.inner(input_ids, positions=positions, attn_mask=attn_mask)


@pytest.fixture
def byte_tok() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture(scope="session")
def bpe_tok():
    """A tiny byte-level BPE made with HF tokenizers, wrapped to the tokenizer protocol."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = ["the cat sat on the mat. the dog sat on the log. " * 20]
    hf.train_from_iterator(text, trainer=trainer)

    class Wrapped:
        eos_id = hf.token_to_id("<|endoftext|>")
        raw = hf
        vocab_size = hf.get_vocab_size()

        def encode_batch(self, texts):
            return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]

        def decode(self, ids):
            return hf.decode(ids)

    return Wrapped()


@pytest.fixture(scope="session")
def models() -> SimpleNamespace:
    """The model classes above (test modules cannot import conftest under importlib mode)."""
    return SimpleNamespace(
        Uniform=UniformModel,
        Unigram=UnigramModel,
        NextByte=NextByteModel,
        CausalMean=CausalMeanModel,
        TinyAttention=TinyAttention,
        TinyAttentionKeep=TinyAttentionKeep,
        TinyAttentionNoHead=TinyAttentionNoHead,
    )
