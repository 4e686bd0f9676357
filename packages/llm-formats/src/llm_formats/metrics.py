"""``metrics.jsonl``: a run's training metrics, one flushed JSON line per record.

A record is ``{"step": int, name: value, ...}`` with each value a float or ``null`` (a
non-finite value: JSON has no NaN or infinity). The file is appended to line by line while
training, so a crash can leave its last line torn; that line is dropped with a warning. A
corrupt line anywhere else is damage, not a crash, and an error naming ``file:line``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["METRICS_FILE", "MetricsError", "make_record", "read_metrics", "read_records",
           "record_line"]  # fmt: skip

METRICS_FILE = "metrics.jsonl"
log = logging.getLogger(__name__)


class MetricsError(ValueError):
    """A metrics line that is not a record (other than a torn last one); names file:line."""


def make_record(step: int, metrics: Mapping[str, float]) -> dict:
    """The record of ``metrics`` at ``step``: floats, non-finite ones as None (``null``)."""
    record: dict = {"step": int(step)}
    for key, value in metrics.items():
        value = float(value)
        record[key] = value if math.isfinite(value) else None
    return record


def record_line(record: Mapping) -> str:
    """One line of the file (with its newline) for ``record``."""
    return json.dumps(record) + "\n"


def read_records(path: str | os.PathLike) -> tuple[list[dict], int]:
    """(records, torn): every record of ``path`` ([] if it does not exist) and how many torn
    last lines were dropped (0 or 1). Raises MetricsError on a bad line before the last."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    lines = path.read_text().splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(_parse(line))
        except ValueError as err:
            if i == last:
                return records, 1
            raise MetricsError(f"{path}:{i + 1}: not a metrics record: {err}") from None
    return records, 0


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Every record of ``path``; a torn last line (a crash while writing) is dropped, with a
    warning that says so."""
    records, torn = read_records(path)
    if torn:
        log.warning("%s: dropped a torn last line (the run stopped while writing it)", path)
    return records


def _parse(line: str) -> dict:
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError(f"a record is a JSON object, got {type(record).__name__}")
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"field 'step' must be an int, got {step!r}")
    return record
