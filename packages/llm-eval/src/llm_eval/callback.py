"""In-loop evaluation for the trainer: bits per byte (overall and per named set) and tasks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from llm_eval.generative import evaluate_generative, generative_metrics
from llm_eval.multiple_choice import PreparedTask, metrics_from_records, prepare, score_prepared
from llm_eval.perplexity import bpb_metrics, encode_windows
from llm_eval.protocols import TokenizerLike, eval_mode, model_device
from llm_eval.ranks import fsdp_entry_points
from llm_eval.scoring import Request, score_requests
from llm_eval.task_spec import TaskSpec, spec_items
from llm_eval.tasks import TaskItem


class InLoopEval:
    """Trainer callback: ``every`` steps, ``callback(step, model) -> {"eval/bpb": ..., ...}``.

    Texts and items are tokenized once, here. Each call runs under `eval_mode` (eval mode,
    ``torch.no_grad``, previous modes restored). Under FSDP every rank must call it (each runs
    the same full evaluation, so the forward passes, and greedy generation's steps, match
    across ranks); `fsdp_entry_points` makes the model's ``hidden_states`` and ``logits``
    gather its parameters as ``forward`` does.

    Args:
        tokenizer: ``encode_batch`` and ``eos_id``.
        heldout_texts: Documents for ``<prefix>/bpb`` (may be empty).
        task_items: Items of any number of tasks (grouped by ``item.task``; may be empty).
        every: Run every this many steps (the trainer reads this attribute).
        seq_len: Window length for bits per byte, and the default ``max_seq_len``.
        batch_size: Sequences per forward pass.
        max_seq_len: Longest task input (contexts truncated from the left, items with a longer
            continuation skipped); default ``seq_len``.
        device: Where inputs go; None = the model's device.
        prefix: Metric name prefix.
        bpb_sets: Named sets of documents (per language, per domain, sets kept out of training)
            reported as ``<prefix>/bpb/<name>``.
        specs: `TaskSpec`s (few-shot, MC letters, generate-until), the first ``spec_limit``
            items of each; a generate task reports ``<prefix>/<task>/{exact_match,f1,contains}``.
        spec_limit: Items per spec.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike,
        heldout_texts: Sequence[str] = (),
        task_items: Sequence[TaskItem] = (),
        *,
        every: int,
        seq_len: int,
        batch_size: int = 8,
        max_seq_len: int | None = None,
        device: torch.device | str | None = None,
        prefix: str = "eval",
        bpb_sets: Mapping[str, Sequence[str]] | None = None,
        specs: Sequence[TaskSpec] = (),
        spec_limit: int = 50,
    ) -> None:
        if every < 1:
            raise ValueError(f"InLoopEval.every: got {every}; must be >= 1")
        self.every = every
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len or seq_len
        self.device = device
        self.prefix = prefix
        named = {"bpb": heldout_texts, **{f"bpb/{k}": v for k, v in (bpb_sets or {}).items()}}
        self._windows: dict[str, tuple[list[Request], int]] = {
            name: encode_windows(tokenizer, texts, seq_len)
            for name, texts in named.items()
            if texts
        }
        by_task: dict[str, list[TaskItem]] = defaultdict(list)
        for item in task_items:
            by_task[item.task].append(item)
        self._tasks: list[PreparedTask] = [
            prepare(tokenizer, items, self.max_seq_len) for items in by_task.values()
        ]
        self.tokenizer = tokenizer
        self._generate: list[tuple[TaskSpec, list[TaskItem]]] = []
        for spec in specs:
            _, _, items = spec_items(spec, spec_limit)
            if spec.kind == "generate":
                self._generate.append((spec, items))
            else:
                self._tasks.append(prepare(tokenizer, items, self.max_seq_len))

    def __call__(self, step: int, model: nn.Module) -> dict[str, float]:
        """Evaluate ``model``: flat ``{"<prefix>/bpb": ..., "<prefix>/<task>/acc": ...}``."""
        out: dict[str, float] = {}
        device = model_device(model) if self.device is None else self.device
        fsdp_entry_points(model)  # a model sharded for training: see there
        with eval_mode(model):
            for name, (windows, n_bytes) in self._windows.items():
                scores = score_requests(
                    model,
                    windows,
                    batch_size=self.batch_size,
                    max_seq_len=self.seq_len,
                    device=device,
                )
                bpb = bpb_metrics(scores, n_bytes)
                out[f"{self.prefix}/{name}"] = bpb["bpb"]
                if name == "bpb":
                    out[f"{self.prefix}/nll_per_token"] = bpb["nll_per_token"]
            for task in self._tasks:
                if not task.items:
                    continue
                records = score_prepared(
                    model,
                    task,
                    max_seq_len=self.max_seq_len,
                    batch_size=self.batch_size,
                    device=device,
                )
                self._report(out, task.task, metrics_from_records(records, task.generation))
            for spec, items in self._generate:
                records = evaluate_generative(
                    model, self.tokenizer, items, stop=spec.stop, max_tokens=spec.max_tokens,
                    max_seq_len=self.max_seq_len, batch_size=self.batch_size, device=device,
                    inference=False,
                )  # fmt: skip
                self._report(out, items[0].task, generative_metrics(records))
        return out

    def _report(self, out: dict[str, float], task: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if name != "n" and not name.endswith("_stderr"):
                out[f"{self.prefix}/{task}/{name}"] = value
