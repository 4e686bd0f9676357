"""Eval task items: the ``{task, id, contexts, choices, gold}`` JSONL schema of
`llm_formats.eval_items`, under llm-eval's public names.

``TaskItem`` and ``load_tasks`` are thin aliases kept because they are llm-eval's public API.
"""

from __future__ import annotations

from llm_formats.eval_items import EvalItem, read_items

TaskItem = EvalItem  # public name of llm_formats.eval_items.EvalItem
load_tasks = read_items  # public name of llm_formats.eval_items.read_items
