"""MinHash near-duplicate removal: datatrove's four stages plus what they lack here.

datatrove runs signatures -> buckets (LSH bands) -> clusters (union-find) -> filter. Added:

- `MultilingualMinhashSignature`: datatrove's signature step takes one word tokenizer per
  step; this one picks it per document from `metadata["language"]` (set by language ID), and
  records each document's id, source and length for stage 3b.
- `ChooseClusterKeepers` (stage 3b, after datatrove's clustering): datatrove keeps its
  union-find root (whichever member the merge order left on top) and does not record which
  copy a removed document duplicates; this step keeps each cluster's best copy by
  `KEEP_RULE`, rewrites datatrove's `.remove` files to match and saves cluster -> kept copy
  for the exclusion output.
"""

from __future__ import annotations

import struct
from collections import defaultdict

import numpy as np
import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer, load_word_tokenizer

from llm_data.dedup import ExclusionWriter, keep_order

__all__ = [
    "ChooseClusterKeepers",
    "MinhashExclusionWriter",
    "MultilingualMinhashSignature",
    "lsh_probability",
    "word_tokenizer_for",
]

DEFAULT_LANGUAGE = "en"  # documents without a language label (books, code) and unknown ones


def lsh_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that two documents of Jaccard `similarity` share at least one LSH band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def word_tokenizer_for(language: str) -> WordTokenizer | None:
    """datatrove's word tokenizer for `language`; None when datatrove has none for it or it
    needs a package that is not installed (e.g. `kiwipiepy` for Korean)."""
    if language == "zh":
        # datatrove's table maps "zh" to spaCy's multi-language model, which does not segment
        # Chinese; spaCy's "zh" uses jieba (as the Gopher filter does).
        return SpaCyTokenizer("zh")
    try:
        tokenizer = load_word_tokenizer(language)
        tokenizer.word_tokenize("probe")  # datatrove imports a tokenizer's package on first use
    except (ValueError, ImportError):
        return None
    return tokenizer


class MultilingualMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature step with a word tokenizer per document language.

    Also writes `docs/<rank>.jsonl`: `[id, source, length, source rank]` per document in
    reading order (the index datatrove's signatures refer to).

    Args:
        output_folder: signature folder (datatrove's `bucket_XXX/<rank>.minhash.sig`).
        config: datatrove's MinhashConfig (n-gram size, bands, rows, seed).
        source_ranks: position of each source in the config (tie-break of `KEEP_RULE`).
    """

    def __init__(
        self, output_folder: DataFolderLike, config: MinhashConfig, source_ranks: dict[str, int]
    ):
        super().__init__(output_folder, config, language=DEFAULT_LANGUAGE)
        self.source_ranks = source_ranks
        self._tokenizers: dict[str, WordTokenizer] = {}

    def _tokenizer(self, language: str) -> WordTokenizer:
        if language not in self._tokenizers:
            tokenizer = word_tokenizer_for(language)
            if tokenizer is None:
                self.stat_update(f"tokenizer_fallback_{language}")
                tokenizer = word_tokenizer_for(DEFAULT_LANGUAGE)
            self._tokenizers[language] = tokenizer
        return self._tokenizers[language]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        with self.output_folder.open(f"docs/{rank:05d}.jsonl", "wb") as docs:
            super().run(self._per_document(data, docs), rank, world_size)

    def _per_document(self, data: DocumentsPipeline, docs) -> DocumentsPipeline:
        for doc in data:
            # The parent computes this document's shingles right after receiving it.
            self.word_tokenizer = self._tokenizer(doc.metadata.get("language") or DEFAULT_LANGUAGE)
            source = str(doc.metadata.get("source", ""))
            rank = self.source_ranks.get(source, len(self.source_ranks))
            docs.write(orjson.dumps([doc.id, source, len(doc.text), rank]) + b"\n")
            yield doc


class ChooseClusterKeepers(PipelineStep):
    """Stage 3b (one task, after `MinhashDedupCluster(save_cluster_id=True)`): keep each
    cluster's best copy by `KEEP_RULE`.

    Rewrites `<file>.remove` (datatrove's format, read by `MinhashDedupFilter`) and writes
    `kept.jsonl`: `[cluster id, kept id, kept source]` per cluster.

    Args:
        signatures_folder: stage 1's folder (for `docs/<rank>.jsonl`).
        clusters_folder: stage 3's output folder.
    """

    type = "🫂 - DEDUP"
    name = "🎯 MinHash: keep the best copy"

    def __init__(self, signatures_folder: DataFolderLike, clusters_folder: DataFolderLike):
        super().__init__()
        self.signatures = get_datafolder(signatures_folder)
        self.clusters = get_datafolder(clusters_folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        with self.track_time():
            members: dict[int, list[tuple]] = defaultdict(
                list
            )  # cluster -> (order, file, doc, id, src)
            for name in self.clusters.list_files(glob_pattern="*.clusters"):
                file = int(name.removesuffix(".clusters"))
                with self.clusters.open(name, "rb") as f:
                    pairs = np.frombuffer(f.read(), dtype="<u4").reshape(-1, 2)
                wanted = {int(doc): int(cluster) for doc, cluster in pairs}
                for doc, (doc_id, source, length, source_rank) in self._doc_info(file, wanted):
                    order = keep_order(length, source_rank, doc_id)
                    members[wanted[doc]].append((order, file, doc, doc_id, source))
            removals: dict[int, list[int]] = defaultdict(list)
            kept_lines = []
            for cluster, copies in sorted(members.items()):
                copies.sort()
                _, _, _, kept_id, kept_source = copies[0]
                kept_lines.append(orjson.dumps([cluster, kept_id, kept_source]) + b"\n")
                self.stat_update("clusters")
                for _, file, doc, _, _ in copies[1:]:
                    removals[file].append(doc)
                    self.stat_update("to_remove")
            for name in self.clusters.list_files(glob_pattern="*.remove"):
                self.clusters.rm(name)  # datatrove's choice, replaced below
            for file, docs in removals.items():
                with self.clusters.open(f"{file:06d}.remove", "wb") as f:
                    f.write(struct.pack(f"<{len(docs)}I", *sorted(docs)))
            with self.clusters.open("kept.jsonl", "wb") as f:
                f.writelines(kept_lines)

    def _doc_info(self, file: int, wanted: dict[int, int]):
        with self.signatures.open(f"docs/{file:05d}.jsonl", "rb") as f:
            for index, line in enumerate(f):
                if index in wanted:
                    yield index, orjson.loads(line)


class MinhashExclusionWriter(ExclusionWriter):
    """Exclusion output of datatrove's `MinhashDedupFilter(load_cluster_ids=True)`: names the
    copy kept in the removed document's cluster (from `ChooseClusterKeepers`' `kept.jsonl`)."""

    def __init__(self, output_folder: DataFolderLike, clusters_folder: DataFolderLike):
        super().__init__(output_folder)
        self.clusters = get_datafolder(clusters_folder)
        self._kept: dict[int, tuple[str, str]] | None = None

    def write(self, document: Document, rank: int = 0, **kwargs) -> None:
        if "_excluded" not in document.metadata:  # called by MinhashDedupFilter
            if self._kept is None:
                self._kept = {}
                with self.clusters.open("kept.jsonl", "rb") as f:
                    for line in f:
                        cluster, kept_id, kept_source = orjson.loads(line)
                        self._kept[cluster] = (kept_id, kept_source)
            kept_id, kept_source = self._kept[document.metadata["minhash_cluster_id"]]
            document.metadata["_excluded"] = ("minhash_duplicate", kept_id, kept_source)
            self.stat_update("dropped_minhash_duplicate")
        super().write(document, rank, **kwargs)
