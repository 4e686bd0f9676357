"""JSON Lines files (plain or gzip): the one line reader every seam's reader builds on.

A seam's reader validates records; this module only turns lines into ``(record, where)`` pairs,
``where`` being ``"file:line"`` so that every error a reader raises points at the line.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["JSONL_SUFFIXES", "FormatError", "is_jsonl", "open_text", "read_jsonl"]

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


class FormatError(ValueError):
    """A seam file that cannot be read or a record that breaks its schema (names file:line)."""


def is_jsonl(path: str | os.PathLike) -> bool:
    """True for a ``.jsonl`` or ``.jsonl.gz`` file name."""
    return Path(path).name.endswith(JSONL_SUFFIXES)


def open_text(path: str | os.PathLike, mode: str = "r") -> IO[str]:
    """Open a UTF-8 text file, through gzip when its name ends in ``.gz``."""
    path = Path(path)
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_jsonl(path: str | os.PathLike, what: str = "JSONL file") -> Iterator[tuple[Any, str]]:
    """``(record, "file:line")`` for each non-blank line of a ``.jsonl`` / ``.jsonl.gz`` file.

    Raises:
        FileNotFoundError: If the file is missing (``what`` names it: "task file", ...).
        FormatError: For a line that is not JSON, or a file that cannot be read (a truncated
            gzip stream, bytes that are not UTF-8), naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    lineno = 0
    try:
        with open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield _decode(line, f"{path}:{lineno}"), f"{path}:{lineno}"
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}:{lineno + 1}: cannot read: {err}") from err


def _decode(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise FormatError(f"{where}: invalid JSON: {err}") from err
