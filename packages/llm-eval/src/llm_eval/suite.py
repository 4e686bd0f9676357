"""Run several task files and collect their metrics."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import torch
from torch import nn

from llm_eval.multiple_choice import evaluate_lambada, evaluate_multiple_choice
from llm_eval.protocols import TokenizerLike
from llm_eval.tasks import TaskItem, load_tasks

logger = logging.getLogger(__name__)


def evaluate_items(
    model: nn.Module, tokenizer: TokenizerLike, items: Sequence[TaskItem], **kwargs
) -> dict[str, float]:
    """`evaluate_lambada` for generation items, else `evaluate_multiple_choice`."""
    evaluate = evaluate_lambada if items and items[0].is_generation else evaluate_multiple_choice
    return evaluate(model, tokenizer, items, **kwargs)


def run_suite(
    model: nn.Module,
    tokenizer: TokenizerLike,
    task_paths: Sequence[str | os.PathLike],
    *,
    max_seq_len: int,
    limit: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate every task file (one task per file) and return ``{task: metrics}``.

    Args:
        model: ``model(input_ids [B, T]) -> logits [B, T, V]``.
        tokenizer: ``encode_batch`` and ``eos_id``.
        task_paths: ``.jsonl`` / ``.jsonl.gz`` files in the ``{task, id, contexts, choices, gold}``
            schema.
        max_seq_len: Longest input; contexts are truncated from the left.
        limit: Use only the first ``limit`` items of each task.
        batch_size: Sequences per forward pass.
        device: Where inputs go; None = the model's device.
    """
    results = {}
    for path in task_paths:
        items = load_tasks(path)[:limit]
        if not items:
            raise ValueError(f"{path}: no task items")
        start = time.perf_counter()
        metrics = evaluate_items(
            model, tokenizer, items, max_seq_len=max_seq_len, batch_size=batch_size, device=device
        )
        results[items[0].task] = metrics
        logger.info("%s: %s (%.1f s)", items[0].task, metrics, time.perf_counter() - start)
    return results
