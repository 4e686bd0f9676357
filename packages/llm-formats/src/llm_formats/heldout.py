"""Held-out documents: ``shards/heldout.jsonl``, the raw text kept out of the token shards.

One ``{"id", "text", "source"}`` object per line, plus ``"language"`` where curation labelled the
document. llm-data's shard writer writes it; bits per byte (per source and per language) and the
scaling ladder read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from llm_formats.jsonl import FormatError, read_jsonl

__all__ = ["HELDOUT_FILE", "HeldoutRecord", "heldout_line", "read_heldout", "write_heldout"]

HELDOUT_FILE = "heldout.jsonl"  # in the shards folder


@dataclass(frozen=True)
class HeldoutRecord:
    """One held-out document: its curated ``id``, ``text``, ``source`` and optional language."""

    id: str
    text: str
    source: str
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as written: ``language`` only when there is one."""
        record = {"id": self.id, "text": self.text, "source": self.source}
        return record | ({"language": self.language} if self.language else {})


def heldout_line(record: HeldoutRecord) -> str:
    """One line of ``heldout.jsonl`` (with its newline)."""
    return json.dumps(record.to_json()) + "\n"


def write_heldout(f: IO[str], record: HeldoutRecord) -> None:
    """Append ``record`` to an open ``heldout.jsonl`` (the shard writer builds the whole folder
    in a temporary directory and renames it, so the file itself needs no atomic write)."""
    f.write(heldout_line(record))


def read_heldout(path: str | os.PathLike) -> Iterator[HeldoutRecord]:
    """The records of a ``heldout.jsonl`` (a shards folder: its ``heldout.jsonl``), in order.

    Raises:
        FileNotFoundError: If the file is missing.
        FormatError: A line that is not JSON or lacks a string ``id``, ``text`` or ``source``,
            naming file, line and field.
    """
    path = Path(path)
    if path.is_dir():
        path = path / HELDOUT_FILE
    for record, where in read_jsonl(path, "held-out file"):
        yield _parse(record, where)


def _parse(record: Any, where: str) -> HeldoutRecord:
    if not isinstance(record, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("id", "text", "source"):
        if not isinstance(record.get(key), str):
            raise FormatError(f"{where}: field {key!r} missing or not a string")
    language = record.get("language")
    if language is not None and not isinstance(language, str):
        raise FormatError(f"{where}: field 'language' must be a string, got {language!r}")
    return HeldoutRecord(record["id"], record["text"], record["source"], language)
