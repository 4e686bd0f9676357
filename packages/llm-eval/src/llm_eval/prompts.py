"""How an item is asked: few-shot prefixes, the multiple-choice-letter formulation (OLMES "MC"
next to the cloze "RC" of the task files) and the answer-text question of a generative task.

All of them turn `EvalItem`s (the JSONL schema) into `EvalItem`s or (prompt, answers) pairs,
so every scorer downstream is the usual one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from llm_formats.eval_items import EvalItem

__all__ = ["LETTERS", "answer_prompt", "example_text", "with_fewshot", "mc_letter"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ANSWER_CUE = "Answer:"


def example_text(item: EvalItem) -> str:
    """A solved example: the gold context and its continuation (``EvalItem.gold_text``; the
    continuation carries its own leading space, the harness's target delimiter)."""
    return item.gold_text


def fewshot_prefix(
    item: EvalItem,
    pool: Sequence[EvalItem],
    k: int,
    *,
    seed: int,
    description: str = "",
    delimiter: str = "\n\n",
) -> str:
    """``description + ex_1 + delimiter + ... + ex_k + delimiter``, as the harness builds it.

    The k examples are drawn from ``pool`` without the item itself (same task and id), by a
    generator seeded with ``seed`` and the item's id, from the pool sorted by id: the same
    examples whatever the order of the pool, the ``limit`` or the other items of the run.
    """
    if k == 0:
        return description
    others = sorted(
        (p for p in pool if (p.task, p.id) != (item.task, item.id)),
        key=lambda p: (isinstance(p.id, str), p.id),  # the pool's order does not matter
    )
    if len(others) < k:
        raise ValueError(
            f"few-shot: {item.task}/{item.id} needs {k} examples, the pool has {len(others)} "
            "other items"
        )
    rng = random.Random(f"{seed}:{item.task}:{item.id}")  # str seeds hash the same everywhere
    shots = rng.sample(others, k)
    return description + delimiter.join(example_text(s) for s in shots) + delimiter


def with_fewshot(items: Sequence[EvalItem], pool: Sequence[EvalItem], k: int, **kwargs):
    """The items with every context prefixed by `fewshot_prefix` (their own draw each)."""
    out = []
    for item in items:
        prefix = fewshot_prefix(item, pool, k, **kwargs)
        out.append(replace(item, contexts=tuple(prefix + c for c in item.contexts)))
    return out


def mc_letter(item: EvalItem) -> EvalItem:
    """The OLMES multiple-choice formulation of a cloze item: the choices listed under the
    question as `` A. ...`` lines, then ``Answer:``, and the letters `` A``, `` B``, ... scored
    as the continuations (same gold). The question is the shared context without its trailing
    ``Answer:`` cue.

    Raises:
        ValueError: For a generation item, more than 26 choices, or choices with different
            contexts (their question cannot be listed once).
    """
    if item.is_generation or len(set(item.contexts)) != 1 or len(item.choices) > len(LETTERS):
        raise ValueError(
            f"mc_letter: {item.task}/{item.id} is not a multiple-choice item with one shared "
            f"context and at most {len(LETTERS)} choices"
        )
    stem = item.contexts[0].rstrip()
    stem = stem.removesuffix(_ANSWER_CUE).rstrip()
    options = "".join(f"\n {LETTERS[i]}. {c.strip()}" for i, c in enumerate(item.choices))
    prompt = f"{stem}{options}\n{_ANSWER_CUE}"
    letters = tuple(f" {LETTERS[i]}" for i in range(len(item.choices)))
    return replace(item, contexts=(prompt,) * len(letters), choices=letters)


def answer_prompt(item: EvalItem) -> tuple[str, tuple[str, ...]]:
    """(prompt, accepted answers) of the item asked as a generate-until question: a generation
    item's context and answers; a multiple-choice item's gold context and its gold choice's
    text (so SciQ or ARC become free-form answers scored by exact match)."""
    if item.is_generation:
        return item.contexts[0], tuple(item.gold)
    return item.contexts[item.gold], (item.choices[item.gold].strip(),)
