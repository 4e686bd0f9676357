"""Zero-shot multiple-choice accuracy and lambada-style greedy accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from llm_eval.protocols import TokenizerLike, eval_mode, model_device
from llm_eval.scoring import Request, Score, score_requests
from llm_eval.tasks import TaskItem


def _split(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing spaces of the context onto the continuation (BPE attaches them to words)."""
    stripped = context.rstrip(" ")
    return stripped, context[len(stripped) :] + continuation


def build_requests(tokenizer: TokenizerLike, items: Sequence[TaskItem]) -> list[list[Request]]:
    """Token requests per item and choice: ``[EOS] + context`` -> continuation.

    The continuation's tokens are those of ``encode(context + continuation)`` after the first
    ``len(encode(context))`` tokens (as lm-eval does), so they are tokenized as in running text.
    """
    pairs = [
        _split(c, x) for item in items for c, x in zip(item.contexts, item.choices, strict=True)
    ]
    contexts = sorted({c for c, _ in pairs})
    context_ids = dict(zip(contexts, tokenizer.encode_batch(contexts), strict=True))
    wholes = tokenizer.encode_batch([c + x for c, x in pairs])
    flat = []
    for (context, continuation), whole in zip(pairs, wholes, strict=True):
        ctx = context_ids[context]
        cont = whole[len(ctx) :]
        if not cont:
            raise ValueError(
                f"continuation {continuation!r} encodes to no tokens after {context!r:.60}"
            )
        flat.append(Request((tokenizer.eos_id, *ctx), tuple(cont)))
    out, pos = [], 0
    for item in items:
        out.append(flat[pos : pos + len(item.choices)])
        pos += len(item.choices)
    return out


def choice_metrics(
    items: Sequence[TaskItem], scores: Sequence[Sequence[Score]]
) -> dict[str, float]:
    """Accuracy of the argmax choice under four scorings (ties go to the first choice).

    - ``acc``: summed log-likelihood of the continuation.
    - ``acc_norm``: log-likelihood / number of characters of the continuation string (lm-eval's
      ``acc_norm``, OLMES's per-character normalisation).
    - ``acc_per_token``: log-likelihood / number of continuation tokens.
    - ``acc_per_byte``: log-likelihood / UTF-8 bytes of the continuation string.
    """
    hits = {"acc": 0, "acc_norm": 0, "acc_per_token": 0, "acc_per_byte": 0}
    for item, item_scores in zip(items, scores, strict=True):
        logprob = np.array([s.logprob for s in item_scores])
        divisors = {
            "acc": np.ones(len(logprob)),
            "acc_norm": np.array([len(c) for c in item.choices], dtype=float),
            "acc_per_token": np.array([s.tokens for s in item_scores], dtype=float),
            "acc_per_byte": np.array([len(c.encode("utf-8")) for c in item.choices], dtype=float),
        }
        for name, divisor in divisors.items():
            hits[name] += int(np.argmax(logprob / divisor) == item.gold)
    n = len(items)
    return {**{k: v / n for k, v in hits.items()}, "n": float(n)}


def greedy_metrics(items: Sequence[TaskItem], scores: Sequence[Score]) -> dict[str, float]:
    """Greedy accuracy and bits per byte of the target continuations (``choices[0]``)."""
    nll = -sum(s.logprob for s in scores)
    n_bytes = sum(len(item.choices[0].encode("utf-8")) for item in items)
    tokens = sum(s.tokens for s in scores)
    return {
        "acc": sum(s.greedy for s in scores) / len(items),
        "bpb": nll / (math.log(2) * n_bytes),
        "nll_per_token": nll / tokens,
        "n": float(len(items)),
    }


def _score(model, requests, batch_size, max_seq_len, device) -> list[Score]:
    device = model_device(model) if device is None else device
    with eval_mode(model):
        return score_requests(
            model, requests, batch_size=batch_size, max_seq_len=max_seq_len, device=device
        )


def _check(items: Sequence[TaskItem], generation: bool) -> None:
    if not items:
        raise ValueError("no task items given")
    wrong = [item for item in items if item.is_generation != generation]
    if wrong:
        kind = "multiple-choice (integer gold)" if not generation else "generation (gold strings)"
        raise ValueError(f"item {wrong[0].task}/{wrong[0].id} is not a {kind} item")


def evaluate_multiple_choice(
    model: nn.Module,
    tokenizer: TokenizerLike,
    items: Sequence[TaskItem],
    *,
    max_seq_len: int,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Zero-shot multiple-choice accuracy (see `choice_metrics` for the four scorings).

    Args:
        model: ``model(input_ids [B, T]) -> logits [B, T, V]``.
        tokenizer: ``encode_batch`` and ``eos_id``.
        items: Items with integer ``gold``.
        max_seq_len: Longest input; contexts are truncated from the left to fit.
        batch_size: Choices per forward pass (right-padded).
        device: Where inputs go; None = the device of the model's parameters.

    Returns:
        ``{"acc", "acc_norm", "acc_per_token", "acc_per_byte", "n"}``.
    """
    _check(items, generation=False)
    per_item = build_requests(tokenizer, items)
    flat = _score(model, [r for reqs in per_item for r in reqs], batch_size, max_seq_len, device)
    scores, pos = [], 0
    for reqs in per_item:
        scores.append(flat[pos : pos + len(reqs)])
        pos += len(reqs)
    return choice_metrics(items, scores)


def evaluate_lambada(
    model: nn.Module,
    tokenizer: TokenizerLike,
    items: Sequence[TaskItem],
    *,
    max_seq_len: int,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Lambada-style last-word prediction.

    ``acc``: the fraction of items where, teacher-forced, the argmax token at every position of
    the target continuation (``choices[0]``, e.g. ``" signs"``) equals the target token, i.e.
    greedy decoding would produce the target. ``bpb``: summed NLL of the target tokens / (ln 2 *
    UTF-8 bytes of ``choices[0]``, leading space included).

    Returns:
        ``{"acc", "bpb", "nll_per_token", "n"}``.
    """
    _check(items, generation=True)
    requests = [reqs[0] for reqs in build_requests(tokenizer, items)]
    return greedy_metrics(items, _score(model, requests, batch_size, max_seq_len, device))
