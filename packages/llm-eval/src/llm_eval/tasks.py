"""Eval task items: the ``{task, id, contexts, choices, gold}`` JSONL schema."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TaskItem:
    """One zero-shot item: choice i is scored as ``choices[i]`` following ``contexts[i]``.

    Attributes:
        task: Task name, e.g. "hellaswag".
        id: Item id within the task.
        contexts: One context per choice.
        choices: Continuations (usually with a leading space).
        gold: Index of the right choice; for generation tasks (lambada), the accepted answer
            strings, with ``choices[0]`` the target continuation.
    """

    task: str
    id: int | str
    contexts: tuple[str, ...]
    choices: tuple[str, ...]
    gold: int | tuple[str, ...]

    @property
    def is_generation(self) -> bool:
        """True when ``gold`` lists answer strings (lambada-style greedy tasks)."""
        return isinstance(self.gold, tuple)


def _str_list(record: dict[str, Any], field: str, where: str) -> tuple[str, ...]:
    value = record[field]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(
            f"{where}: field {field!r} must be a non-empty list of strings, got {value!r:.80}"
        )
    return tuple(value)


def parse_item(record: Any, where: str) -> TaskItem:
    """Validate one decoded JSON record; ``where`` ("file:line") prefixes every error."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in ("task", "id", "contexts", "choices", "gold"):
        if field not in record:
            raise ValueError(f"{where}: missing field {field!r}")
    if not isinstance(record["task"], str) or not record["task"]:
        raise ValueError(
            f"{where}: field 'task' must be a non-empty string, got {record['task']!r}"
        )
    if not isinstance(record["id"], int | str) or isinstance(record["id"], bool):
        raise ValueError(f"{where}: field 'id' must be an int or string, got {record['id']!r}")
    contexts = _str_list(record, "contexts", where)
    choices = _str_list(record, "choices", where)
    if len(contexts) != len(choices):
        raise ValueError(
            f"{where}: field 'contexts' has {len(contexts)} entries, 'choices' {len(choices)}"
        )
    gold = record["gold"]
    if isinstance(gold, list):
        gold = _str_list(record, "gold", where)
        if len(choices) != 1:
            raise ValueError(
                f"{where}: field 'gold' is a list of answers, so 'choices' must have 1 entry"
            )
    elif not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise ValueError(
            f"{where}: field 'gold' must be an index in [0, {len(choices)}) or a list of strings, "
            f"got {gold!r}"
        )
    return TaskItem(record["task"], record["id"], contexts, choices, gold)


def read_records(path: str | os.PathLike, what: str) -> Iterator[tuple[dict, str]]:
    """``(record, "file:line")`` for each non-blank line of a ``.jsonl`` / ``.jsonl.gz`` file.

    Raises:
        FileNotFoundError: If the file is missing (``what``: "task file", "text set").
        ValueError: For a line that is not JSON, naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield json.loads(line), where
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON: {err}") from err


def load_tasks(path: str | os.PathLike) -> list[TaskItem]:
    """Read task items from a ``.jsonl`` or ``.jsonl.gz`` file (blank lines skipped).

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: For a malformed line, naming file, line and field.
    """
    return [parse_item(record, where) for record, where in read_records(path, "task file")]
