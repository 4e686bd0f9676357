"""Text sets for bits per byte: ``{"text"}`` JSONL documents, or task items as running text."""

from __future__ import annotations

import os

from llm_formats.eval_items import parse_item
from llm_formats.jsonl import FormatError, read_jsonl


def load_texts(path: str | os.PathLike) -> list[str]:
    """Texts of a ``.jsonl`` / ``.jsonl.gz`` file: each record's ``"text"``, or for a record in
    the task schema its gold text (`EvalItem.gold_text`, the text decontamination keeps out of
    training), so an eval set kept out of training doubles as an out-of-distribution text set.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: For a line that is neither, naming file and line.
    """
    texts = []
    for record, where in read_jsonl(path, "text set"):
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            texts.append(record["text"])
            continue
        if not isinstance(record, dict) or "contexts" not in record:
            raise FormatError(f"{where}: expected a 'text' string or a task item")
        texts.append(parse_item(record, where).gold_text)
    return texts
