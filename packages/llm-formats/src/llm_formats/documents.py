"""Curated documents: ``curated/<source>/<rank>.jsonl.gz``, one ``{"id", "text", "metadata"}``
per line (datatrove's Document, written by llm-data's curation).

Tokenizer training, the shards, the app's statistics and the tools all read these files; this is
their one reader, so they agree on what a document is: a JSON object whose ``"text"`` is a
string, whose ``"id"`` (missing: ``<file name>/<line>``) is kept as a string, and whose language
is ``metadata.language`` when curation's language ID labelled it.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_bytes
from llm_formats.jsonl import FormatError, is_jsonl, read_jsonl

__all__ = ["NOT_SOURCES", "Document", "curated_sources", "parse_document", "read_documents",
           "write_documents"]  # fmt: skip

NOT_SOURCES = ("excluded", "logs", "_work")  # folders of a curation output that are no source


@dataclass(frozen=True)
class Document:
    """One curated document.

    Attributes:
        id: The record's ``"id"`` as a string (``<file name>/<line>`` when it has none).
        text: The document's text.
        language: ``metadata.language`` when it is a string, else None.
        metadata: The record's ``"metadata"`` object ({} when absent).
        where: ``"file:line"`` of the record, for errors about it downstream.
    """

    id: str
    text: str
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    where: str = ""


def read_documents(path: str | os.PathLike) -> Iterator[Document]:
    """The documents of one ``.jsonl`` / ``.jsonl.gz`` file, in file order (blank lines skipped).

    Raises:
        FileNotFoundError: If the file is missing.
        FormatError: A line that is not JSON, not an object, or without a string ``"text"``,
            naming file, line and field.
    """
    path = Path(path)
    for record, where in read_jsonl(path, "documents file"):
        yield parse_document(record, where, default_id=f"{path.name}/{where.rsplit(':', 1)[1]}")


def parse_document(record: Any, where: str, default_id: str) -> Document:
    """Validate one decoded record; ``where`` ("file:line") prefixes every error."""
    if not isinstance(record, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("text"), str):
        raise FormatError(f"{where}: field 'text' missing or not a string (a datatrove Document)")
    metadata = record.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    language = metadata.get("language")
    return Document(
        id=str(record.get("id", default_id)),
        text=record["text"],
        language=language if isinstance(language, str) else None,
        metadata=metadata,
        where=where,
    )


def curated_sources(curated_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """Each source folder of a curation output mapped to its sorted ``*.jsonl[.gz]`` files.

    A source that curation emptied (a folder without files) is left out, as are ``excluded/``
    (removed documents) and ``logs/``.
    """
    root = Path(curated_dir)
    sources = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NOT_SOURCES):
        files = sorted(f for f in folder.iterdir() if f.is_file() and is_jsonl(f))
        if files:
            sources[folder.name] = files
    return sources


def write_documents(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``{"id", "text", "metadata"}`` records as JSONL (gzip for ``.gz``), atomically.

    The gzip header carries no time stamp, so the same records give the same bytes.
    """
    path, records = Path(path), list(records)
    for i, record in enumerate(records):
        parse_document(record, f"{path} record {i}", default_id="")  # refuse a record without text
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)
