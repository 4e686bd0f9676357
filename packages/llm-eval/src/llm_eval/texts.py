"""Text sets for bits per byte: ``{"text"}`` JSONL documents, or task items as running text."""

from __future__ import annotations

import os

from llm_eval.tasks import parse_item, read_records


def load_texts(path: str | os.PathLike) -> list[str]:
    """Texts of a ``.jsonl`` / ``.jsonl.gz`` file: each record's ``"text"``, or for a record in
    the task schema its gold context + choice (``contexts[0] + choices[0]`` for lambada-style
    items), so an eval set kept out of training doubles as an out-of-distribution text set.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: For a line that is neither, naming file and line.
    """
    texts = []
    for record, where in read_records(path, "text set"):
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            texts.append(record["text"])
            continue
        if not isinstance(record, dict) or "contexts" not in record:
            raise ValueError(f"{where}: expected a 'text' string or a task item")
        item = parse_item(record, where)
        gold = 0 if item.is_generation else item.gold
        texts.append(item.contexts[gold] + item.choices[gold])
    return texts
