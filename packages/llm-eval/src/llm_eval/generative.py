"""Generate-until tasks: each item's prompt is continued by the generation engine until a stop
string, and the text is scored against the accepted answers (`llm_eval.answers`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from llm_eval.answers import ANSWER_METRICS
from llm_eval.generation import Sampling, generate
from llm_eval.multiple_choice import mean_stderr
from llm_eval.prompts import answer_prompt
from llm_eval.protocols import TokenizerLike
from llm_formats.eval_items import EvalItem

__all__ = ["evaluate_generative", "generative_metrics"]


def evaluate_generative(
    model: nn.Module,
    tokenizer: TokenizerLike,
    items: Sequence[EvalItem],
    *,
    stop: Sequence[str],
    max_tokens: int,
    max_seq_len: int,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    sampling: Sampling | None = None,
    compile: bool = False,
    inference: bool = True,
) -> list[dict[str, Any]]:
    """One record per item: ``{task, id, prompt_tokens, generation, answers, finish,
    correct: {exact_match, f1, contains}}``. Prompts are ``[EOS] + encode(prompt)`` (as
    scoring conditions contexts), truncated from the left to leave ``max_tokens``; trailing
    spaces of a prompt are kept (the harness does too for generate-until). ``inference``:
    see `llm_eval.generation.generate`."""
    asked = [answer_prompt(item) for item in items]
    ids = [[tokenizer.eos_id, *p] for p in tokenizer.encode_batch([p for p, _ in asked])]
    out = generate(
        model, tokenizer, ids, stop=list(stop), max_tokens=max_tokens, max_seq_len=max_seq_len,
        batch_size=batch_size, device=device, sampling=sampling, compile=compile,
        inference=inference,
    )  # fmt: skip
    records = []
    for item, (_, answers), prompt, gen in zip(items, asked, ids, out, strict=True):
        records.append(
            {
                "task": item.task,
                "id": item.id,
                "prompt_tokens": len(prompt),
                "generation": gen.text,
                "answers": list(answers),
                "finish": gen.finish,
                "correct": {name: fn(gen.text, answers) for name, fn in ANSWER_METRICS.items()},
            }
        )
    return records


def generative_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of each answer metric with its standard error, and ``n``."""
    if not records:
        return {"n": 0.0}
    out: dict[str, float] = {}
    for name in ANSWER_METRICS:
        hits = [r["correct"][name] for r in records]
        out[name] = float(np.mean(hits))
        out[f"{name}_stderr"] = mean_stderr(hits)
    out["n"] = float(len(records))
    return out
