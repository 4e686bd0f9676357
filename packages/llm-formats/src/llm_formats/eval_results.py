"""Eval results: ``<dir>/<task>.jsonl`` (one record per item: every choice's log-likelihood,
tokens, bytes, the prediction; skipped items named) and ``<dir>/results.json`` (metadata, metrics
per task with stderr, skipped items, seconds per task).

llm-eval's suite writes them; ``llm-eval report``, ``llm-eval distill`` and the app's eval stage
read them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_text
from llm_formats.jsonl import FormatError, read_jsonl

__all__ = ["RESULTS_FILE", "read_summary", "read_task_records", "task_records_path",
           "write_jsonl_records", "write_summary"]  # fmt: skip

RESULTS_FILE = "results.json"


def task_records_path(directory: str | os.PathLike, task: str) -> Path:
    """The per-item records of one task."""
    return Path(directory) / f"{task}.jsonl"


def write_jsonl_records(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> Path:
    """Records as JSON Lines (UTF-8 kept as is), written atomically: a task's per-item file, or
    distilled items."""
    return atomic_write_text(
        path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    )


def write_summary(directory: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """``results.json``, written atomically (after each task, so finished tasks survive)."""
    if not isinstance(summary.get("tasks"), dict):
        raise FormatError(f"{directory}/{RESULTS_FILE}: field 'tasks' must be an object")
    return atomic_write_text(Path(directory) / RESULTS_FILE, json.dumps(summary, indent=2) + "\n")


def read_summary(directory: str | os.PathLike) -> dict[str, Any]:
    """``results.json`` of a results directory: ``tasks`` (metrics per task), ``metadata``,
    ``skipped``, ``seconds``.

    Raises:
        FileNotFoundError: If ``directory`` has no ``results.json``.
        FormatError: If it is not JSON or has no ``tasks`` object.
    """
    path = Path(directory) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a results directory (run `llm-eval run`)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: invalid JSON: {err}") from err
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), dict):
        raise FormatError(f"{path}: field 'tasks' missing or not an object")
    return summary


def read_task_records(directory: str | os.PathLike, task: str) -> list[dict[str, Any]]:
    """The per-item records of ``task`` (skipped items included, marked ``"skipped"``).

    Raises:
        FileNotFoundError: If the task's file is missing.
        FormatError: A line that is not a JSON object with an ``id``, naming file and line.
    """
    records = []
    for record, where in read_jsonl(task_records_path(directory, task), "task results file"):
        if not isinstance(record, dict) or "id" not in record:
            raise FormatError(f"{where}: expected a JSON object with field 'id'")
        records.append(record)
    return records
