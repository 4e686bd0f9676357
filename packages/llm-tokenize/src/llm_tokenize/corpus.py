"""Reading curated JSONL documents and sampling a training mixture from several sources."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llm_formats import documents as curated
from llm_formats.atomic import sha256_file
from llm_formats.jsonl import FormatError, is_jsonl
from llm_tokenize.config import TrainingSource


class CorpusError(ValueError):
    """Training or statistics text that cannot be read; the message names the file and line."""


@dataclass
class Document:
    """A datatrove Document line: ``text`` plus the ``source`` and ``language`` it belongs to."""

    id: str
    text: str
    source: str
    language: str | None = None


@dataclass
class SourceStats:
    """What was read from one source and how much of it went into training."""

    files: list[dict] = field(default_factory=list)  # {"path", "bytes", "sha256"}
    docs: int = 0
    bytes: int = 0
    train_docs: int = 0
    train_bytes: int = 0


def resolve_paths(source: TrainingSource) -> list[Path]:
    """The JSONL files of a source, sorted; errors name the source and the path."""
    if not source.paths:
        raise CorpusError(f"source {source.name!r}: no paths given")
    files: list[Path] = []
    for entry in source.paths:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_jsonl(p))
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(entry, recursive=True) if _is_jsonl(Path(p)))
        if not found:
            raise CorpusError(
                f"source {source.name!r}: {entry} is no JSONL file, folder with *.jsonl[.gz] "
                "files, or glob that matches one"
            )
        files += found
    return files


def _is_jsonl(path: Path) -> bool:
    return path.is_file() and is_jsonl(path)


def read_documents(path: Path, source: str) -> Iterator[Document]:
    """Documents of one JSONL(.gz) file; a line that is not a Document stops with its number."""
    try:
        for doc in curated.read_documents(path):
            yield Document(id=doc.id, text=doc.text, source=source, language=doc.language)
    except FormatError as err:
        raise CorpusError(str(err)) from err


def load_source(source: TrainingSource) -> tuple[list[Document], SourceStats]:
    """Every document of a source, with its files' sizes and hashes (for the card)."""
    docs: list[Document] = []
    stats = SourceStats()
    for path in resolve_paths(source):
        stats.files.append(
            {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        )
        docs.extend(read_documents(path, source.name))
    stats.docs = len(docs)
    stats.bytes = sum(len(d.text.encode("utf-8")) for d in docs)
    return docs, stats


def sample_mixture(
    docs_by_source: dict[str, list[Document]],
    proportions: dict[str, float],
    total_bytes: int,
) -> dict[str, list[Document]]:
    """Documents per source whose UTF-8 size is about ``proportion * total_bytes``.

    A source larger than its share is subsampled (evenly spaced documents, not its first files);
    a smaller one is repeated whole as often as needed, then topped up the same way. Deterministic:
    no random numbers, the same input gives the same selection.
    """
    chosen: dict[str, list[Document]] = {}
    for name, docs in docs_by_source.items():
        target = proportions[name] * total_bytes
        size = sum(len(d.text.encode("utf-8")) for d in docs)
        if size == 0:
            raise CorpusError(f"source {name!r}: no text to sample (all documents are empty)")
        repeats, rest = divmod(target, size)
        chosen[name] = docs * int(repeats) + _evenly_spaced(docs, rest / size)
    return chosen


def stats_sample(docs: list[Document], max_bytes_per_group: int) -> list[Document]:
    """Evenly spaced documents of each source and of each language, each group within about
    ``max_bytes_per_group`` UTF-8 bytes (at least one document), in their original order."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, doc in enumerate(docs):
        groups.setdefault((doc.source, doc.language), []).append(i)
    keep: set[int] = set()
    for members in groups.values():
        size = sum(len(docs[i].text.encode("utf-8")) for i in members)
        fraction = min(1.0, max_bytes_per_group / size) if size else 1.0
        chosen = _evenly_spaced(members, fraction) or members[:1]
        keep.update(chosen)
    return [docs[i] for i in sorted(keep)]


def _evenly_spaced(docs: list, fraction: float) -> list:
    """About ``fraction`` of ``docs`` by count, spread over the whole list."""
    count = round(fraction * len(docs))
    if count == 0:
        return []
    step = len(docs) / count
    return [docs[int(i * step)] for i in range(count)]
