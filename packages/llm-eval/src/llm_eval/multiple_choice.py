"""Zero-shot multiple-choice accuracy and lambada-style greedy accuracy, with per-item records."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from llm_eval.protocols import TokenizerLike, eval_mode, model_device
from llm_eval.ranks import Ranks
from llm_eval.scoring import Request, Score, check_request, score_requests
from llm_eval.tasks import TaskItem

CHOICE_METRICS = ("acc", "acc_norm", "acc_per_token", "acc_per_byte")


def _split(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing spaces of the context onto the continuation (BPE attaches them to words)."""
    stripped = context.rstrip(" ")
    return stripped, context[len(stripped) :] + continuation


def build_requests(tokenizer: TokenizerLike, items: Sequence[TaskItem]) -> list[list[Request]]:
    """Token requests per item and choice: ``[EOS] + context`` -> continuation.

    The continuation's tokens are those of ``encode(context + continuation)`` after the first
    ``len(encode(context))`` tokens (as lm-eval does), so they are tokenized as in running text.
    A continuation that encodes to no tokens gives a request with an empty continuation, which
    `prepare` skips and names.
    """
    pairs = [
        _split(c, x) for item in items for c, x in zip(item.contexts, item.choices, strict=True)
    ]
    contexts = sorted({c for c, _ in pairs})
    context_ids = dict(zip(contexts, tokenizer.encode_batch(contexts), strict=True))
    wholes = tokenizer.encode_batch([c + x for c, x in pairs])
    flat = []
    for (context, _), whole in zip(pairs, wholes, strict=True):
        ctx = context_ids[context]
        flat.append(Request((tokenizer.eos_id, *ctx), tuple(whole[len(ctx) :])))
    out, pos = [], 0
    for item in items:
        out.append(flat[pos : pos + len(item.choices)])
        pos += len(item.choices)
    return out


def mean_stderr(hits: Sequence[float]) -> float:
    """Standard error of a mean: sample standard deviation (n - 1) / sqrt(n), as lm-eval's
    ``mean_stderr``; for 0/1 hits this is the closed form ``sqrt(p (1 - p) / (n - 1))``."""
    n = len(hits)
    if n < 2:
        return float("nan")
    return float(np.std(np.asarray(hits, dtype=float), ddof=1) / math.sqrt(n))


@dataclass
class PreparedTask:
    """A task's items tokenized, with the items that cannot be scored set aside.

    Attributes:
        task: Task name.
        items: The items that will be scored.
        requests: Per kept item, one request per choice.
        skipped: ``{"task", "id", "reason"}`` per item left out (e.g. too long).
    """

    task: str
    items: list[TaskItem]
    requests: list[list[Request]]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def generation(self) -> bool:
        return bool(self.items) and self.items[0].is_generation

    def skipped_records(self) -> list[dict[str, Any]]:
        """Per-item file lines for the skipped items: ``{"task", "id", "skipped": reason}``."""
        return [{"task": s["task"], "id": s["id"], "skipped": s["reason"]} for s in self.skipped]


def prepare(tokenizer: TokenizerLike, items: Sequence[TaskItem], max_seq_len: int) -> PreparedTask:
    """Tokenize ``items`` (one task, one kind) and skip, naming them, those that cannot be scored:
    a choice whose continuation is longer than ``max_seq_len`` tokens or encodes to nothing."""
    if not items:
        raise ValueError("no task items given")
    task = items[0].task
    wrong = [i for i in items if i.is_generation != items[0].is_generation or i.task != task]
    if wrong:
        raise ValueError(
            f"item {wrong[0].task}/{wrong[0].id} differs in task or kind from {task}/{items[0].id}"
        )
    kept, requests, skipped = [], [], []
    for item, reqs in zip(items, build_requests(tokenizer, items), strict=True):
        reasons = [check_request(r, max_seq_len) for r in reqs]
        bad = [(k, why) for k, why in enumerate(reasons) if why]
        if bad:
            k, why = bad[0]
            skipped.append({"task": task, "id": item.id, "reason": f"choice {k}: {why}"})
            continue
        kept.append(item)
        requests.append(reqs)
    return PreparedTask(task, kept, requests, skipped)


def choice_records(
    items: Sequence[TaskItem], scores: Sequence[Sequence[Score]]
) -> list[dict[str, Any]]:
    """One record per item: every choice's log-likelihood, token, byte and character counts,
    and the predicted choice and hit under each scoring (ties go to the first choice):

    - ``acc``: summed log-likelihood of the continuation.
    - ``acc_norm``: log-likelihood / characters of the choice (lm-eval's ``acc_norm``, OLMES's
      per-character normalisation).
    - ``acc_per_token``: log-likelihood / continuation tokens.
    - ``acc_per_byte``: log-likelihood / UTF-8 bytes of the choice.
    """
    records = []
    for item, item_scores in zip(items, scores, strict=True):
        logprob = np.array([s.logprob for s in item_scores])
        chars = np.array([len(c) for c in item.choices], dtype=float)
        n_bytes = np.array([len(c.encode("utf-8")) for c in item.choices], dtype=float)
        tokens = np.array([s.tokens for s in item_scores], dtype=float)
        divisors = {"acc": 1.0, "acc_norm": chars, "acc_per_token": tokens, "acc_per_byte": n_bytes}
        pred = {name: int(np.argmax(logprob / d)) for name, d in divisors.items()}
        records.append(
            {
                "task": item.task,
                "id": item.id,
                "gold": item.gold,
                "loglikelihoods": logprob.tolist(),
                "tokens": [s.tokens for s in item_scores],
                "bytes": n_bytes.astype(int).tolist(),
                "chars": chars.astype(int).tolist(),
                "greedy": [s.greedy for s in item_scores],
                "predictions": pred,
                "correct": {name: int(p == item.gold) for name, p in pred.items()},
            }
        )
    return records


def greedy_records(items: Sequence[TaskItem], scores: Sequence[Score]) -> list[dict[str, Any]]:
    """One record per lambada-style item: the target's log-likelihood, tokens, bytes, greedy hit."""
    return [
        {
            "task": item.task,
            "id": item.id,
            "target": item.choices[0],
            "loglikelihood": s.logprob,
            "tokens": s.tokens,
            "bytes": len(item.choices[0].encode("utf-8")),
            "greedy": s.greedy,
            "correct": {"acc": int(s.greedy)},
        }
        for item, s in zip(items, scores, strict=True)
    ]


def metrics_from_records(records: Sequence[dict[str, Any]], generation: bool) -> dict[str, float]:
    """Accuracies with their standard errors (`mean_stderr`), and for lambada-style records the
    target's bits per byte and NLL per token; ``n`` = items scored."""
    if not records:
        return {"n": 0.0}
    names = ("acc",) if generation else CHOICE_METRICS
    out: dict[str, float] = {}
    for name in names:
        hits = [r["correct"][name] for r in records]
        out[name] = float(np.mean(hits))
        out[f"{name}_stderr"] = mean_stderr(hits)
    if generation:
        nll = -sum(r["loglikelihood"] for r in records)
        out["bpb"] = nll / (math.log(2) * sum(r["bytes"] for r in records))
        out["nll_per_token"] = nll / sum(r["tokens"] for r in records)
    out["n"] = float(len(records))
    return out


def score_prepared(
    model: nn.Module,
    prepared: PreparedTask,
    *,
    max_seq_len: int,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    packed: bool | None = None,
    autocast: bool = False,
    progress: Callable[[int], None] | None = None,
    inference: bool = False,
    ranks: Ranks | None = None,
) -> list[dict[str, Any]]:
    """Score a prepared task; its per-item records (see `choice_records`, `greedy_records`).
    ``progress`` is called with the number of items finished (approximately, per batch);
    ``inference`` runs under ``torch.inference_mode`` (see `eval_mode`); ``ranks`` shares the
    requests among the ranks of a ``torch.distributed`` job (every rank gets every record)."""
    sizes = [len(r) for r in prepared.requests]
    flat = [r for reqs in prepared.requests for r in reqs]
    per_request = None
    if progress is not None:
        ratio = len(prepared.items) / max(len(flat), 1)
        per_request = _Fraction(progress, ratio)
    device = model_device(model) if device is None else device
    with eval_mode(model, inference=inference):
        scores = score_requests(
            model,
            flat,
            batch_size=batch_size,
            max_seq_len=max_seq_len,
            device=device,
            packed=packed,
            autocast=autocast,
            progress=per_request,
            ranks=ranks,
        )
    if prepared.generation:
        return greedy_records(prepared.items, scores)
    grouped, pos = [], 0
    for size in sizes:
        grouped.append(scores[pos : pos + size])
        pos += size
    return choice_records(prepared.items, grouped)


class _Fraction:
    """Turns requests finished into items finished for a progress bar (carrying remainders)."""

    def __init__(self, progress: Callable[[int], None], ratio: float) -> None:
        self.progress, self.ratio, self.done, self.reported = progress, ratio, 0, 0

    def __call__(self, n: int) -> None:
        self.done += n
        items = round(self.done * self.ratio)
        self.progress(items - self.reported)
        self.reported = items


def _evaluate(model, tokenizer, items, generation: bool, **kwargs) -> dict[str, float]:
    kind = "generation (gold strings)" if generation else "multiple-choice (integer gold)"
    wrong = [item for item in items if item.is_generation != generation]
    if wrong:
        raise ValueError(f"item {wrong[0].task}/{wrong[0].id} is not a {kind} item")
    prepared = prepare(tokenizer, items, kwargs["max_seq_len"])
    records = score_prepared(model, prepared, **kwargs) if prepared.items else []
    return {
        **metrics_from_records(records, generation),
        "skipped": float(len(prepared.skipped)),
    }


def evaluate_multiple_choice(
    model: nn.Module,
    tokenizer: TokenizerLike,
    items: Sequence[TaskItem],
    *,
    max_seq_len: int,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    packed: bool | None = None,
    autocast: bool = False,
) -> dict[str, float]:
    """Zero-shot multiple-choice accuracy (see `choice_records` for the four scorings).

    Args:
        model: ``model(input_ids [B, T]) -> logits [B, T, V]``.
        tokenizer: ``encode_batch`` and ``eos_id``.
        items: Items with integer ``gold``.
        max_seq_len: Longest input; contexts are truncated from the left to fit, items with a
            longer continuation are skipped (counted in ``skipped``).
        batch_size: Rows per forward pass.
        device: Where inputs go; None = the device of the model's parameters.
        packed: Run each context once for all its choices; None = when the model supports it.
        autocast: bf16 autocast for the forward pass.

    Returns:
        ``acc``, ``acc_norm``, ``acc_per_token``, ``acc_per_byte``, each with ``<name>_stderr``,
        ``n`` (items scored) and ``skipped``.
    """
    return _evaluate(
        model,
        tokenizer,
        items,
        False,
        max_seq_len=max_seq_len,
        batch_size=batch_size,
        device=device,
        packed=packed,
        autocast=autocast,
    )


def evaluate_lambada(
    model: nn.Module,
    tokenizer: TokenizerLike,
    items: Sequence[TaskItem],
    *,
    max_seq_len: int,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    packed: bool | None = None,
    autocast: bool = False,
) -> dict[str, float]:
    """Lambada-style last-word prediction.

    ``acc``: the fraction of items where, teacher-forced, the argmax token at every position of
    the target continuation (``choices[0]``, e.g. ``" signs"``) equals the target token, i.e.
    greedy decoding would produce the target. ``bpb``: summed NLL of the target tokens / (ln 2 *
    UTF-8 bytes of ``choices[0]``, leading space included).

    Returns:
        ``{"acc", "acc_stderr", "bpb", "nll_per_token", "n", "skipped"}``.
    """
    return _evaluate(
        model,
        tokenizer,
        items,
        True,
        max_seq_len=max_seq_len,
        batch_size=batch_size,
        device=device,
        packed=packed,
        autocast=autocast,
    )
