"""Run several task files, write per-item records and metrics, and collect the metrics."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from llm_eval.aggregate import add_score, best_of_formulations, macro_average
from llm_eval.generative import evaluate_generative, generative_metrics
from llm_eval.multiple_choice import PreparedTask, metrics_from_records, prepare, score_prepared
from llm_eval.protocols import TokenizerLike
from llm_eval.ranks import Ranks
from llm_eval.task_spec import TaskSpec, as_spec, spec_items
from llm_formats.eval_results import task_records_path, write_jsonl_records, write_summary

logger = logging.getLogger(__name__)


def run_suite(
    model: nn.Module,
    tokenizer: TokenizerLike,
    task_paths: Sequence[str | os.PathLike | TaskSpec],
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
    generation: dict[str, Any] | None = None,
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
            schema (zero-shot cloze), `TaskSpec`s (formulation, few-shot, generate-until) or
            YAML files of them (`llm_eval.task_spec.load_task_specs`).
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
            ``output_dir`` and shows the progress bar. Generate tasks run whole on every rank
            (the same outputs everywhere; not tested with a sharded model).
        generation: Options of the generation engine for generate tasks (``batch_size``,
            ``sampling``, ``compile``: `llm_eval.generative.evaluate_generative`).

    Every task's metrics include ``score`` (`llm_eval.aggregate.add_score`); ``results.json``
    also gets ``aggregate`` (`suite_aggregate`: macro average with its standard error, best
    of the cloze and MC-letter formulations).
    """
    specs = [spec for task in task_paths for spec in as_spec(task)]
    tasks = [_prepare_spec(spec, tokenizer, limit, max_seq_len) for spec in specs]
    main = ranks is None or ranks.main
    writer = _ResultsWriter(output_dir if main else None, metadata, max_seq_len)
    score = dict(max_seq_len=max_seq_len, batch_size=batch_size, device=device, packed=packed,
                 autocast=autocast, inference=True, ranks=ranks)  # fmt: skip  # standalone
    progress = progress and main
    results: dict[str, dict[str, float]] = {}
    total = sum(len(t.prepared.items) for t in tasks)
    with tqdm(total=total, unit="item", desc="eval", disable=not progress) as bar:
        for task in tasks:
            for skip in task.prepared.skipped if main else ():
                logger.warning("skipped %s/%s: %s", skip["task"], skip["id"], skip["reason"])
            start = time.perf_counter()
            bar.set_postfix_str(task.prepared.task)
            records, metrics = _run_task(model, tokenizer, task, score, generation or {}, bar)
            metrics["skipped"] = float(len(task.prepared.skipped))
            add_score(metrics, task.spec, task.prepared.generation)
            results[task.prepared.task] = metrics
            seconds = time.perf_counter() - start
            logger.info("%s: %s (%.1f s)", task.prepared.task, metrics, seconds)
            writer.task_done(task.prepared, records, metrics, seconds)
    named = {t.prepared.task: (t.base, t.spec) for t in tasks}
    writer.aggregate(suite_aggregate(results, named))
    return results


def suite_aggregate(
    results: dict[str, dict[str, float]], specs: dict[str, tuple[str, TaskSpec]]
) -> dict[str, Any]:
    """The macro average of the tasks' ``score`` and the best of formulations
    (`llm_eval.aggregate`): ``results.json``'s ``aggregate``."""
    return {**macro_average(results), "best_of_formulations": best_of_formulations(results, specs)}


@dataclass
class _Task:
    spec: TaskSpec
    base: str  # the file's task name
    prepared: PreparedTask


def _prepare_spec(spec: TaskSpec, tokenizer: TokenizerLike, limit, max_seq_len: int) -> _Task:
    """Read (and for scoring, tokenize) a spec's items; generate tasks skip nothing (their
    prompts are truncated from the left)."""
    base, name, items = spec_items(spec, limit)
    if spec.kind == "generate":
        return _Task(spec, base, PreparedTask(name, items, []))
    return _Task(spec, base, prepare(tokenizer, items, max_seq_len))


def _run_task(model, tokenizer, task: _Task, score: dict, generation: dict, bar):
    """(per-item records, metrics) of one task, scored or generated."""
    prepared = task.prepared
    if not prepared.items:
        return [], {"n": 0.0}
    if task.spec.kind == "generate":
        records = evaluate_generative(
            model, tokenizer, prepared.items, stop=task.spec.stop,
            max_tokens=task.spec.max_tokens, max_seq_len=score["max_seq_len"],
            device=score["device"], **generation,
        )  # fmt: skip
        bar.update(len(records))
        return records, generative_metrics(records)
    records = score_prepared(model, prepared, progress=bar.update, **score)
    return records, metrics_from_records(records, prepared.generation)


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

    def aggregate(self, aggregate: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        self.summary["aggregate"] = aggregate
        write_summary(self.out_dir, self.summary)
