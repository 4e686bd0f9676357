"""Run several task files, write per-item records and metrics, and collect the metrics."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from llm_eval.multiple_choice import metrics_from_records, prepare, score_prepared
from llm_eval.protocols import TokenizerLike
from llm_eval.ranks import Ranks
from llm_eval.tasks import load_tasks
from llm_formats.eval_results import task_records_path, write_jsonl_records, write_summary

logger = logging.getLogger(__name__)


def run_suite(
    model: nn.Module,
    tokenizer: TokenizerLike,
    task_paths: Sequence[str | os.PathLike],
    *,
    max_seq_len: int,
    limit: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    packed: bool | None = None,
    autocast: bool = False,
    output_dir: str | os.PathLike | None = None,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    ranks: Ranks | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate every task file (one task per file) and return ``{task: metrics}``.

    Scoring runs under ``torch.inference_mode`` (see `eval_mode`): for a model that is not in
    the middle of training (in the training loop, use `InLoopEval`). All files are read and
    tokenized before any scoring, so a malformed file fails first. An
    item with a continuation longer than ``max_seq_len`` tokens is skipped and named (a warning,
    ``skipped`` in the metrics, a ``"skipped"`` record in the per-item file); the other items
    and tasks are scored as usual.

    Args:
        model: ``model(input_ids [B, T]) -> logits [B, T, V]``; see `score_requests` for the
            optional ``positions`` / ``attn_mask`` that let a context run once for all choices.
        tokenizer: ``encode_batch`` and ``eos_id``.
        task_paths: ``.jsonl`` / ``.jsonl.gz`` files in the ``{task, id, contexts, choices, gold}``
            schema.
        max_seq_len: Longest input; contexts are truncated from the left.
        limit: Use only the first ``limit`` items of each task.
        batch_size: Rows per forward pass.
        device: Where inputs go; None = the model's device.
        packed: Share contexts among choices; None = when the model supports it.
        autocast: bf16 autocast for the forward passes (for GPUs).
        output_dir: When set, ``<task>.jsonl`` (one record per item, skipped ones included) and
            ``results.json`` (``metadata``, metrics per task, skipped items) are written there
            after each task, atomically, so finished tasks survive a later failure.
        metadata: What was evaluated (model, tokenizer, ...), copied into ``results.json``.
        progress: Show a progress bar (items/s).
        ranks: Share every task's requests among the ranks of a ``torch.distributed`` job (see
            `llm_eval.ranks`): every rank returns the one-process metrics, rank 0 alone writes
            ``output_dir`` and shows the progress bar.
    """
    prepared = [_prepare_file(path, tokenizer, limit, max_seq_len) for path in task_paths]
    main = ranks is None or ranks.main
    writer = _ResultsWriter(output_dir if main else None, metadata, max_seq_len)
    score = dict(max_seq_len=max_seq_len, batch_size=batch_size, device=device, packed=packed,
                 autocast=autocast, inference=True, ranks=ranks)  # fmt: skip  # standalone
    progress = progress and main
    results: dict[str, dict[str, float]] = {}
    total = sum(len(p.items) for p in prepared)
    with tqdm(total=total, unit="item", desc="eval", disable=not progress) as bar:
        for task in prepared:
            for skip in task.skipped if main else ():
                logger.warning("skipped %s/%s: %s", skip["task"], skip["id"], skip["reason"])
            start = time.perf_counter()
            bar.set_postfix_str(task.task)
            records = (
                score_prepared(model, task, progress=bar.update, **score) if task.items else []
            )
            metrics = metrics_from_records(records, task.generation)
            metrics["skipped"] = float(len(task.skipped))
            results[task.task] = metrics
            seconds = time.perf_counter() - start
            logger.info("%s: %s (%.1f s)", task.task, metrics, seconds)
            writer.task_done(task, records, metrics, seconds)
    return results


def _prepare_file(path, tokenizer: TokenizerLike, limit: int | None, max_seq_len: int):
    items = load_tasks(path)[:limit]
    if not items:
        raise ValueError(f"{path}: no task items")
    return prepare(tokenizer, items, max_seq_len)


class _ResultsWriter:
    """``<task>.jsonl`` and ``results.json`` in ``output_dir`` (nothing when it is None),
    rewritten atomically after each task, so finished tasks survive a later failure."""

    def __init__(self, output_dir, metadata: dict[str, Any] | None, max_seq_len: int) -> None:
        self.out_dir = Path(output_dir) if output_dir is not None else None
        self.summary: dict[str, Any] = {"metadata": metadata or {}, "max_seq_len": max_seq_len}
        self.summary.update(tasks={}, skipped=[], seconds={})

    def task_done(self, task, records: list[dict], metrics: dict, seconds: float) -> None:
        if self.out_dir is None:
            return
        path = task_records_path(self.out_dir, task.task)
        write_jsonl_records(path, [*records, *task.skipped_records()])
        self.summary["tasks"][task.task] = metrics
        self.summary["skipped"] += task.skipped
        self.summary["seconds"][task.task] = round(seconds, 3)
        write_summary(self.out_dir, self.summary)
