"""Bits per byte (and per-token NLL) of a model on held-out text."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from llm_eval.protocols import TokenizerLike, eval_mode, model_device
from llm_eval.ranks import Ranks
from llm_eval.scoring import Request, Score, score_requests


def encode_windows(
    tokenizer: TokenizerLike, texts: Sequence[str], seq_len: int
) -> tuple[list[Request], int]:
    """Split each ``[EOS] + encode(text)`` into non-overlapping windows of ``seq_len`` predictions.

    Window k feeds tokens ``[k*seq_len, (k+1)*seq_len)`` and predicts the next token at each
    position, so every text token is predicted exactly once; a window sees no context from the
    window before it (non-overlapping: cheaper, slightly pessimistic vs a sliding window).

    Returns:
        The windows as requests (1-token context, the rest scored) and the texts' UTF-8 bytes.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len: got {seq_len}; must be >= 1")
    requests = []
    for ids in tokenizer.encode_batch(list(texts)):
        tokens = [tokenizer.eos_id, *ids]
        for start in range(0, len(ids), seq_len):
            window = tokens[start : start + seq_len + 1]
            requests.append(Request(tuple(window[:1]), tuple(window[1:])))
    return requests, sum(len(t.encode("utf-8")) for t in texts)


def bpb_metrics(scores: Sequence[Score], n_bytes: int) -> dict[str, float]:
    """``bpb = sum NLL (nats) / (ln 2 * bytes)``, NLL per token and token-level perplexity."""
    if n_bytes == 0:
        raise ValueError("bits_per_byte: the texts have no bytes")
    nll = -sum(s.logprob for s in scores)
    tokens = sum(s.tokens for s in scores)
    return {
        "bpb": nll / (math.log(2) * n_bytes),
        "nll_per_token": nll / tokens,
        "perplexity": math.exp(nll / tokens),
        "tokens": float(tokens),
        "bytes": float(n_bytes),
    }


def bits_per_byte(
    model: nn.Module,
    tokenizer: TokenizerLike,
    texts: Sequence[str],
    *,
    seq_len: int,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    ranks: Ranks | None = None,
) -> dict[str, float]:
    """Bits per UTF-8 byte of ``texts`` under ``model`` (tokenizer-independent compression).

    Each text is encoded, prefixed with EOS and cut into non-overlapping windows of ``seq_len``
    (see `encode_windows`); ``bpb = sum of NLL in nats over all predicted tokens / (ln 2 * UTF-8
    bytes of the texts)``.

    Args:
        model: ``model(input_ids [B, T]) -> logits [B, T, V]``.
        tokenizer: ``encode_batch`` and ``eos_id``.
        texts: Documents.
        seq_len: Positions per forward pass (the model's context length or less).
        batch_size: Windows per forward pass.
        device: Where inputs go; None = the device of the model's parameters.
        ranks: Share the windows among the ranks of a ``torch.distributed`` job (see
            `llm_eval.ranks`); every rank returns the one-process result.

    Returns:
        ``{"bpb", "nll_per_token", "perplexity", "tokens", "bytes"}``.
    """
    requests, n_bytes = encode_windows(tokenizer, texts, seq_len)
    device = model_device(model) if device is None else device
    with eval_mode(model):
        scores = score_requests(
            model, requests, batch_size=batch_size, max_seq_len=seq_len, device=device,
            ranks=ranks,
        )  # fmt: skip
    return bpb_metrics(scores, n_bytes)


def bits_per_byte_sets(
    model: nn.Module,
    tokenizer: TokenizerLike,
    sets: Mapping[str, Sequence[str]],
    *,
    seq_len: int,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    ranks: Ranks | None = None,
) -> dict[str, dict[str, float]]:
    """`bits_per_byte` of each named set of texts (per language, per domain, held-out or
    out-of-distribution sets): ``{name: {"bpb", ...}}``; an empty set is left out."""
    return {
        name: bits_per_byte(
            model,
            tokenizer,
            texts,
            seq_len=seq_len,
            batch_size=batch_size,
            device=device,
            ranks=ranks,
        )
        for name, texts in sets.items()
        if texts
    }
