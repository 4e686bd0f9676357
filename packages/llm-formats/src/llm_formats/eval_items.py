"""Eval items: JSONL ``{task, id, contexts[], choices[], gold}``, one item per line.

Written by the sample eval slices and llm-eval's distillation, read by llm-eval (scoring) and by
llm-data's decontamination (which drops training documents that contain an item's text). Both
use `EvalItem.gold_text`, so the text decontamination looks for is the text llm-eval scores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llm_formats.jsonl import FormatError, read_jsonl

__all__ = ["EvalItem", "iter_items", "parse_item", "read_items"]


@dataclass(frozen=True)
class EvalItem:
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

    @property
    def gold_index(self) -> int:
        """The choice that is right: ``gold``, or 0 (the target) for a generation item."""
        return 0 if self.is_generation else self.gold  # type: ignore[return-value]

    @property
    def gold_text(self) -> str:
        """The gold context + continuation, as llm-eval scores it: the item's text that a
        training document must not contain, and its running text for bits per byte."""
        return self.contexts[self.gold_index] + self.choices[self.gold_index]


def read_items(path: str | os.PathLike) -> list[EvalItem]:
    """The items of a ``.jsonl`` / ``.jsonl.gz`` file (blank lines skipped).

    Raises:
        FileNotFoundError: If the file is missing.
        FormatError: For a malformed line, naming file, line and field.
    """
    return list(iter_items(path))


def iter_items(path: str | os.PathLike) -> Iterator[EvalItem]:
    """`read_items` one at a time."""
    for record, where in read_jsonl(path, "task file"):
        yield parse_item(record, where)


def _str_list(record: dict[str, Any], field: str, where: str) -> tuple[str, ...]:
    value = record[field]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise FormatError(
            f"{where}: field {field!r} must be a non-empty list of strings, got {value!r:.80}"
        )
    return tuple(value)


def parse_item(record: Any, where: str) -> EvalItem:
    """Validate one decoded JSON record; ``where`` ("file:line") prefixes every error."""
    if not isinstance(record, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in ("task", "id", "contexts", "choices", "gold"):
        if field not in record:
            raise FormatError(f"{where}: missing field {field!r}")
    if not isinstance(record["task"], str) or not record["task"]:
        raise FormatError(
            f"{where}: field 'task' must be a non-empty string, got {record['task']!r}"
        )
    if not isinstance(record["id"], int | str) or isinstance(record["id"], bool):
        raise FormatError(f"{where}: field 'id' must be an int or string, got {record['id']!r}")
    contexts = _str_list(record, "contexts", where)
    choices = _str_list(record, "choices", where)
    if len(contexts) != len(choices):
        raise FormatError(
            f"{where}: field 'contexts' has {len(contexts)} entries, 'choices' {len(choices)}"
        )
    return EvalItem(record["task"], record["id"], contexts, choices, _gold(record, choices, where))


def _gold(record: dict[str, Any], choices: tuple[str, ...], where: str) -> int | tuple[str, ...]:
    gold = record["gold"]
    if isinstance(gold, list):
        answers = _str_list(record, "gold", where)
        if len(choices) != 1:
            raise FormatError(
                f"{where}: field 'gold' is a list of answers, so 'choices' must have 1 entry"
            )
        return answers
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise FormatError(
            f"{where}: field 'gold' must be an index in [0, {len(choices)}) or a list of strings, "
            f"got {gold!r}"
        )
    return gold
