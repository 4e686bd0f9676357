"""In-loop evaluation for the trainer: held-out bits per byte and task accuracy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import nn

from llm_eval.multiple_choice import build_requests, choice_metrics, greedy_metrics
from llm_eval.perplexity import bpb_metrics, encode_windows
from llm_eval.protocols import TokenizerLike, eval_mode, model_device
from llm_eval.scoring import Request, score_requests
from llm_eval.tasks import TaskItem


class InLoopEval:
    """Trainer callback: ``every`` steps, ``callback(step, model) -> {"eval/bpb": ..., ...}``.

    Texts and items are tokenized once, here. Each call runs under `eval_mode` (eval mode,
    ``torch.no_grad``, previous modes restored). Under FSDP every rank must call it (each runs
    the same full evaluation, so the forward passes match across ranks).

    Args:
        tokenizer: ``encode_batch`` and ``eos_id``.
        heldout_texts: Documents for bits per byte (may be empty).
        task_items: Items of any number of tasks (grouped by ``item.task``; may be empty).
        every: Run every this many steps (the trainer reads this attribute).
        seq_len: Window length for bits per byte, and the default ``max_seq_len``.
        batch_size: Sequences per forward pass.
        max_seq_len: Longest task input (contexts truncated from the left); default ``seq_len``.
        device: Where inputs go; None = the model's device.
        prefix: Metric name prefix.
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
    ) -> None:
        if every < 1:
            raise ValueError(f"InLoopEval.every: got {every}; must be >= 1")
        self.every = every
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len or seq_len
        self.device = device
        self.prefix = prefix
        self._windows: list[Request] = []
        self._bytes = 0
        if heldout_texts:
            self._windows, self._bytes = encode_windows(tokenizer, heldout_texts, seq_len)
        by_task: dict[str, list[TaskItem]] = defaultdict(list)
        for item in task_items:
            by_task[item.task].append(item)
        self._tasks = {
            task: (items, build_requests(tokenizer, items)) for task, items in by_task.items()
        }

    def _score(self, model: nn.Module, requests: list[Request]):
        device = model_device(model) if self.device is None else self.device
        return score_requests(
            model,
            requests,
            batch_size=self.batch_size,
            max_seq_len=self.max_seq_len,
            device=device,
        )

    def __call__(self, step: int, model: nn.Module) -> dict[str, float]:
        """Evaluate ``model``: flat ``{"<prefix>/bpb": ..., "<prefix>/<task>/acc": ...}``."""
        out: dict[str, float] = {}
        with eval_mode(model):
            if self._windows:
                bpb = bpb_metrics(self._score(model, self._windows), self._bytes)
                out[f"{self.prefix}/bpb"] = bpb["bpb"]
                out[f"{self.prefix}/nll_per_token"] = bpb["nll_per_token"]
            for task, (items, per_item) in self._tasks.items():
                flat = self._score(model, [r for reqs in per_item for r in reqs])
                if items[0].is_generation:
                    metrics = greedy_metrics(items, flat)
                else:
                    sizes = [len(reqs) for reqs in per_item]
                    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
                    scores = [flat[o : o + s] for o, s in zip(offsets, sizes, strict=True)]
                    metrics = choice_metrics(items, scores)
                for name, value in metrics.items():
                    if name != "n":
                        out[f"{self.prefix}/{task}/{name}"] = value
        return out
