"""Global dedup by key (exact text, normalised URL), hash-partitioned over tasks, and what every
dedup stage shares: which copy is kept, the exclusion output and one data file per task.

A keyed dedup runs as three datatrove stages, like datatrove's own exact dedup:

1. `KeySignature` (one task per input shard): each document's key, written to the partition
   `key % partitions` as `(key, rank, index, id, source, length)`.
2. `KeyFindDuplicates` (one task per partition): groups each key's documents, keeps the
   best-ranked one (`KEEP_RULE`) and lists every other as `(index, kept id, kept source)` for
   the task that holds it.
3. `KeyDedupFilter` (one task per input shard, reading the same shard as stage 1): drops the
   listed documents and writes each to the exclusion output.

Written here rather than taken from `datatrove.pipeline.dedup.exact_dedup`: datatrove's stage 2
records only the removed document's index, not which copy it duplicates (the exclusion output
names it), breaks priority ties by the index inside a task (so the kept copy depended on how
files were split into tasks) and takes a 16-bit priority; and datatrove 0.9 has no URL dedup.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections import defaultdict
from typing import Literal

import orjson
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import JsonlWriter

from llm_data.urls import normalize_url

__all__ = [
    "KEEP_RULE",
    "ExclusionWriter",
    "KeyDedupFilter",
    "KeyFindDuplicates",
    "KeySignature",
    "RankJsonlWriter",
    "keep_order",
    "normalized_text_hash",
]

KEEP_RULE = "the longest text; on a tie the source listed first in the config, then the smallest id"
TEXT_PREFIX_CHARS = 200  # of a removed document, in its exclusion record
_SPACES = re.compile(r"\s+")


def normalized_text_hash(text: str) -> int:
    """128-bit xxh3 hash of `text` after NFKC, lower-casing and whitespace collapsing."""
    normalized = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
    return xxhash.xxh3_128_intdigest(normalized.encode("utf-8"))


def keep_order(length: int, source_rank: int, doc_id: str) -> tuple:
    """Sort key of a copy: the smallest is kept (see `KEEP_RULE`)."""
    return (-length, source_rank, doc_id)


def _source(doc: Document) -> str:
    return str(doc.metadata.get("source", ""))


def _doc_key(kind: str, doc: Document) -> int | None:
    if kind == "exact":
        return normalized_text_hash(doc.text)
    url = normalize_url(doc.metadata.get("url"))
    return None if url is None else xxhash.xxh3_128_intdigest(url.encode("utf-8"))


class KeySignature(PipelineStep):
    """Stage 1: write each document's key to its partition (documents without one are kept).

    Args:
        folder: this dedup's work folder.
        kind: "exact" (normalised text, see `normalized_text_hash`) or "url" (`normalize_url`
            of `metadata["url"]`; documents without a URL are counted as `no_url`).
        partitions: tasks of stage 2.
        source_ranks: position of each source in the config (the tie-break of `KEEP_RULE`).
    """

    type = "🫂 - DEDUP"

    def __init__(
        self,
        folder: DataFolderLike,
        kind: Literal["exact", "url"],
        partitions: int,
        source_ranks: dict[str, int],
    ):
        super().__init__()
        self.folder = get_datafolder(folder)
        self.kind = kind
        self.partitions = partitions
        self.source_ranks = source_ranks
        self.name = f"🔑 {kind} dedup: keys"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        n = 0
        with self.folder.get_output_file_manager(mode="wb") as out:
            # Every partition gets a file, possibly empty, so stage 2 sees each task once.
            for part in range(self.partitions):
                out.get_file(f"keys/{part:04d}/{rank:05d}.jsonl")
            for index, doc in enumerate(data):
                n += 1
                with self.track_time():
                    self.stat_update("total")
                    key = _doc_key(self.kind, doc)
                    if key is None:
                        self.stat_update(f"no_{self.kind}")
                        continue
                    source = _source(doc)
                    record = [
                        f"{key:032x}",
                        rank,
                        index,
                        doc.id,
                        source,
                        len(doc.text),
                        self.source_ranks.get(source, len(self.source_ranks)),
                    ]
                    out.write(
                        f"keys/{key % self.partitions:04d}/{rank:05d}.jsonl",
                        orjson.dumps(record) + b"\n",
                    )
        _write_count(self.folder, rank, n)


class KeyFindDuplicates(PipelineStep):
    """Stage 2: in one partition, keep the best copy of each key and list the others.

    Holds one partition's records in memory: raise `partitions` when a partition outgrows it.
    """

    type = "🫂 - DEDUP"

    def __init__(self, folder: DataFolderLike, kind: str):
        super().__init__()
        self.folder = get_datafolder(folder)
        self.name = f"🔑 {kind} dedup: find duplicates"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        groups: dict[str, list[list]] = defaultdict(list)
        with self.track_time():
            for name in self.folder.list_files(subdirectory=f"keys/{rank:04d}"):
                with self.folder.open(name, "rb") as f:
                    for line in f:
                        record = orjson.loads(line)
                        groups[record[0]].append(record)
            removals: dict[int, list[bytes]] = defaultdict(list)
            for records in groups.values():
                if len(records) < 2:
                    continue
                # record: key, rank, index, id, source, length, source rank
                records.sort(key=lambda r: keep_order(r[5], r[6], r[3]))
                kept = records[0]
                self.stat_update("duplicate_groups")
                for r in records[1:]:
                    self.stat_update("duplicates")
                    removals[r[1]].append(orjson.dumps([r[2], kept[3], kept[4]]) + b"\n")
            with self.folder.get_output_file_manager(mode="wb") as out:
                for task, lines in removals.items():
                    for line in lines:
                        out.write(f"remove/{rank:04d}/{task:05d}.jsonl", line)


class KeyDedupFilter(PipelineStep):
    """Stage 3: drop the documents stage 2 listed for this task; keep the rest in order.

    Raises:
        RuntimeError: this task reads a different number of documents than stage 1 did (its
            input changed between the stages), since the removal lists are by position.
    """

    type = "🫂 - DEDUP"

    def __init__(self, folder: DataFolderLike, kind: str, exclusion_writer: ExclusionWriter):
        super().__init__()
        self.folder = get_datafolder(folder)
        self.reason = f"{kind}_duplicate"
        self.exclusion_writer = exclusion_writer
        self.name = f"🔑 {kind} dedup: filter"

    def _removals(self, rank: int) -> dict[int, tuple[str, str]]:
        removals = {}
        for name in self.folder.list_files(subdirectory="remove", recursive=True):
            if name.endswith(f"/{rank:05d}.jsonl"):
                with self.folder.open(name, "rb") as f:
                    for line in f:
                        index, kept_id, kept_source = orjson.loads(line)
                        removals[index] = (kept_id, kept_source)
        return removals

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        removals = self._removals(rank)
        n = 0
        with self.exclusion_writer as excluded:
            for index, doc in enumerate(data):
                n += 1
                self.stat_update("total")
                if index in removals:
                    kept_id, kept_source = removals[index]
                    self.stat_update("dropped", f"dropped_{self.reason}")
                    excluded.write_excluded(doc, rank, self.reason, kept_id, kept_source)
                    continue
                self.stat_update("forwarded")
                yield doc
        _check_count(self.folder, rank, n, self.name)


class ExclusionWriter(JsonlWriter):
    """JSONL of removed documents: `{"id", "reason", "duplicate_of", "duplicate_of_source",
    "source", "url", "text_prefix"}`, one file per task."""

    name = "🗑️ Exclusions"

    def __init__(self, output_folder: DataFolderLike):
        super().__init__(output_folder, output_filename="${rank}.jsonl.gz", adapter=_exclusion)

    def write_excluded(
        self, doc: Document, rank: int, reason: str, kept_id: str | None, kept_source: str | None
    ) -> None:
        doc.metadata["_excluded"] = (reason, kept_id, kept_source)
        self.write(doc, rank)


def _exclusion(self, doc: Document) -> dict:
    reason, kept_id, kept_source = doc.metadata.pop("_excluded")
    return {
        "id": doc.id,
        "reason": reason,
        "duplicate_of": kept_id,
        "duplicate_of_source": kept_source,
        "source": doc.metadata.get("source"),
        "url": doc.metadata.get("url"),
        "text_prefix": doc.text[:TEXT_PREFIX_CHARS],
    }


class RankJsonlWriter(JsonlWriter):
    """datatrove's JsonlWriter writing `<rank>.jsonl.gz`, and an empty one for a task with no
    documents: the next stage reads the folder with the same number of tasks, and datatrove's
    readers give task r the r-th file of the sorted listing, so every task needs its file."""

    def __init__(self, output_folder: DataFolderLike):
        super().__init__(output_folder, output_filename="${rank}.jsonl.gz")

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        yield from super().run(data, rank, world_size)
        name = f"{rank:05d}.jsonl.gz"
        if not self.output_folder.exists(name):
            with self.output_folder.open(name, "wb") as f:
                f.write(gzip.compress(b""))


def _write_count(folder, rank: int, n: int) -> None:
    with folder.open(f"counts/{rank:05d}.json", "wb") as f:
        f.write(orjson.dumps({"documents": n}))


def _check_count(folder, rank: int, n: int, stage: str) -> None:
    with folder.open(f"counts/{rank:05d}.json", "rb") as f:
        expected = orjson.loads(f.read())["documents"]
    if n != expected:
        raise RuntimeError(
            f"{stage}: task {rank} read {n} documents but its signature stage read {expected}: "
            "the input changed between the dedup stages"
        )
