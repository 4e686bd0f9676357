"""Text sets for bits per byte: ``{"text"}`` JSONL documents, or task items as running text."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from llm_eval.tasks import parse_item


def load_texts(path: str | os.PathLike) -> list[str]:
    """Texts of a ``.jsonl`` / ``.jsonl.gz`` file: each record's ``"text"``, or for a record in
    the task schema its gold context + choice (``contexts[0] + choices[0]`` for lambada-style
    items), so an eval set kept out of training doubles as an out-of-distribution text set.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: For a line that is neither, naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text set not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON: {err}") from err
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                texts.append(record["text"])
                continue
            if not isinstance(record, dict) or "contexts" not in record:
                raise ValueError(f"{where}: expected a 'text' string or a task item")
            item = parse_item(record, where)
            gold = 0 if item.is_generation else item.gold
            texts.append(item.contexts[gold] + item.choices[gold])
    return texts
