"""Batched log-likelihood of continuations given contexts: the core of every metric here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llm_eval.protocols import LanguageModel

IGNORE = -100


@dataclass(frozen=True)
class Request:
    """Score ``continuation`` token ids given ``context`` token ids (context has >= 1 token)."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Score:
    """Result of one request: summed log-probability (nats), its token count, greedy match."""

    logprob: float
    tokens: int
    greedy: bool


def _window(req: Request, max_seq_len: int) -> tuple[list[int], int]:
    """Model input (context truncated from the left) and the number of scored positions."""
    n_cont = len(req.continuation)
    if not req.context or n_cont == 0:
        raise ValueError(f"request needs >= 1 context and continuation token, got {req}")
    if n_cont > max_seq_len:
        raise ValueError(f"continuation of {n_cont} tokens exceeds max_seq_len={max_seq_len}")
    full = [*req.context, *req.continuation][-(max_seq_len + 1) :]
    return full[:-1], n_cont


def _batch_tensors(
    requests: Sequence[Request], max_seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs [B, L] and targets [B, L] (IGNORE outside continuations)."""
    windows = [_window(r, max_seq_len) for r in requests]
    length = max(len(inp) for inp, _ in windows)
    inputs = torch.zeros(len(requests), length, dtype=torch.long)
    targets = torch.full((len(requests), length), IGNORE, dtype=torch.long)
    for row, ((inp, n_cont), req) in enumerate(zip(windows, requests, strict=True)):
        inputs[row, : len(inp)] = torch.tensor(inp)
        # Position t predicts token t + 1: the last n_cont positions predict the continuation.
        targets[row, len(inp) - n_cont : len(inp)] = torch.tensor(req.continuation)
    return inputs, targets


def _forward(model: LanguageModel, inputs: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    logits = getattr(out, "logits", out)  # also accept HF-style outputs
    if not isinstance(logits, torch.Tensor) or logits.shape[:2] != inputs.shape:
        shape = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(
            f"model must return logits [B, T, V] for input {inputs.shape}, got {shape}"
        )
    return logits


def score_requests(
    model: LanguageModel,
    requests: Sequence[Request],
    *,
    batch_size: int,
    max_seq_len: int,
    device: torch.device | str,
) -> list[Score]:
    """Summed log-probability of each continuation, in batches with right padding.

    Contexts are truncated from the left so that context + continuation fits ``max_seq_len``
    positions; padding sits after each sequence, so a causal model's scores do not depend on it.
    Requests are run longest first (less padding) and returned in input order. Call under
    `eval_mode`.

    Raises:
        ValueError: For an empty context or continuation, a continuation longer than
            ``max_seq_len``, or a model output that is not [B, T, V].
    """
    order = sorted(
        range(len(requests)), key=lambda i: -len(requests[i].context + requests[i].continuation)
    )
    scores: list[Score | None] = [None] * len(requests)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        inputs, targets = _batch_tensors([requests[i] for i in idx], max_seq_len)
        inputs, targets = inputs.to(device), targets.to(device)
        logits = _forward(model, inputs).float()
        nll = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none"
        ).view_as(targets)
        mask = targets != IGNORE
        logprob = -(nll.double() * mask).sum(1)
        hits = ((logits.argmax(-1) == targets) | ~mask).all(1)
        for row, i in enumerate(idx):
            scores[i] = Score(float(logprob[row]), int(mask[row].sum()), bool(hits[row]))
    return scores  # type: ignore[return-value]
