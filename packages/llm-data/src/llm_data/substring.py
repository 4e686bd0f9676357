"""Substring dedup in the spirit of Lee et al. (2021): a span of at least N words that another
document also has is cut from every copy but one; the documents themselves are kept.

Spans are runs of whole sentences (a sentence: what the language's spaCy sentencizer gives,
further cut at newlines, so that menu lines and code lines are units too). Like datatrove's
sentence dedup (`SentenceDedupSignature` -> `SentenceFindDedups` -> `SentenceDedupFilter`),
it runs as three datatrove stages that scale out:

1. `SentenceSignature` (one task per input shard): a 64-bit hash of each sentence (NFKC, lower
   case, collapsed spaces), written to partition `hash % partitions` as `(hash, rank, index,
   sentence)`; each document's `[id, source, length, source rank]` to `docs/<rank>.jsonl`.
2. `SentenceFindDuplicates` (one task per partition): for each hash found in two or more
   documents, the copy in the document ranked first by `KEEP_RULE` is kept and every copy in
   another document is listed for its task as `(index, sentence, kept id, kept source)`.
3. `SentenceSpanFilter` (one task per input shard): cuts each run of consecutive listed
   sentences with at least `min_words` words (the language's word tokenizer), writes what it
   cut to the exclusion output, drops a document left with fewer than `min_doc_words` words.

Written here rather than taken from datatrove's sentence dedup: datatrove keeps the copy that
sorts first by (hash, index inside its task, task), so which copy survived depended on how
files were split into tasks; it splits every document with one language's tokenizer; its
16-bit sentence index overflows on a book; and it records neither the kept copy nor the cut.
A suffix array over the whole corpus (Lee et al.'s ExactSubstr) finds repeats that do not
align with sentences, but it is one index on one machine (several bytes of memory per corpus
byte); these stages hold one partition of sentence hashes per task, like exact dedup.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

import numpy as np
import orjson
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer

from llm_data.dedup import (
    TEXT_PREFIX_CHARS,
    ExclusionWriter,
    _check_count,
    _source,
    _write_count,
    keep_order,
)
from llm_data.minhash import DEFAULT_LANGUAGE, word_tokenizer_for

__all__ = [
    "CUTS_DIR",
    "CutsWriter",
    "SentenceFindDuplicates",
    "SentenceSignature",
    "SentenceSpanFilter",
    "sentence_spans",
]

CUTS_DIR = "cuts"  # excluded/substring/cuts/<rank>.jsonl.gz: what was cut from kept documents
_SPACES = re.compile(r"\s+")
_SIG = np.dtype([("hash", "<u8"), ("rank", "<u4"), ("doc", "<u4"), ("sent", "<u4")])


class _Tokenizers:
    """One datatrove word tokenizer per language (English for unlabelled documents and for
    languages datatrove has none for), loaded when first needed."""

    def __init__(self):
        self._by_language: dict[str, WordTokenizer] = {}

    def __call__(self, doc: Document) -> WordTokenizer:
        language = doc.metadata.get("language") or DEFAULT_LANGUAGE
        if language not in self._by_language:
            tokenizer = word_tokenizer_for(language) or word_tokenizer_for(DEFAULT_LANGUAGE)
            self._by_language[language] = tokenizer
        return self._by_language[language]


def sentence_spans(text: str, tokenizer: WordTokenizer) -> list[tuple[int, int, int]]:
    """`(start, end, words)` of each sentence of `text`: the tokenizer's sentences, cut at
    newlines, without surrounding whitespace (empty pieces left out); words are tokens with a
    letter or digit (punctuation is no word)."""
    if not text.strip():
        return []
    if isinstance(tokenizer, SpaCyTokenizer):
        return _spacy_sentences(text, tokenizer)
    spans = []
    for start, end in tokenizer.span_tokenize(text):
        for a, b in _lines(text, start, end):
            spans.append((a, b, _count_words(text[a:b], tokenizer)))
    return spans


def _spacy_sentences(text: str, tokenizer: SpaCyTokenizer) -> list[tuple[int, int, int]]:
    """`sentence_spans` from one spaCy pass (sentences and their tokens together: a second
    pass to count words would double the cost)."""
    spans, offset = [], 0
    nlp = tokenizer.tokenizer
    with nlp.memory_zone():
        nlp.max_length = len(text) + 10
        for chunk in tokenizer._do_tokenize(text):  # ja: consecutive chunks of the text
            # Offsets into `text`: a spaCy Doc's `.text` is rebuilt on every access.
            for sent in chunk.sents:
                lines = _lines(text, offset + sent.start_char, offset + sent.end_char)
                if not lines:
                    continue  # a "sentence" of whitespace only
                words = [0] * len(lines)
                i = 0
                for token in sent:
                    while i + 1 < len(lines) and offset + token.idx >= lines[i][1]:
                        i += 1
                    words[i] += any(c.isalnum() for c in token.text)
                spans += list(zip([a for a, _ in lines], [b for _, b in lines], words, strict=True))
            offset += len(chunk.text)
    return spans


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The non-blank lines of `text[start:end]`, stripped, as offsets in `text`."""
    out = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        piece = line.group()
        left, right = len(piece) - len(piece.lstrip()), len(piece.rstrip())
        if right > left:
            out.append((start + line.start() + left, start + line.start() + right))
    return out


def _sentence_hash(sentence: str) -> int:
    normalized = _SPACES.sub(" ", unicodedata.normalize("NFKC", sentence).lower()).strip()
    return xxhash.xxh3_64_intdigest(normalized.encode("utf-8"))


class SentenceSignature(PipelineStep):
    """Stage 1: each sentence's hash to its partition, each document's keep-order fields.

    Args:
        folder: this dedup's work folder.
        partitions: tasks of stage 2.
        source_ranks: position of each source in the config (the tie-break of `KEEP_RULE`).
    """

    type = "🫂 - DEDUP"
    name = "✂️ substring dedup: sentence hashes"

    def __init__(self, folder: DataFolderLike, partitions: int, source_ranks: dict[str, int]):
        super().__init__()
        self.folder = get_datafolder(folder)
        self.partitions = partitions
        self.source_ranks = source_ranks
        self.tokenizers = _Tokenizers()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        rows: list[tuple[int, int, int, int]] = []
        n = 0
        with self.folder.open(f"docs/{rank:05d}.jsonl", "wb") as docs:
            for index, doc in enumerate(data):
                n += 1
                with self.track_time():
                    self.stat_update("total")
                    source = _source(doc)
                    source_rank = self.source_ranks.get(source, len(self.source_ranks))
                    docs.write(orjson.dumps([doc.id, source, len(doc.text), source_rank]) + b"\n")
                    spans = sentence_spans(doc.text, self.tokenizers(doc))
                    for s, (a, b, _) in enumerate(spans):
                        rows.append((_sentence_hash(doc.text[a:b]), rank, index, s))
                    self.stat_update("sentences", value=len(spans))
        signatures = np.array(rows, dtype=_SIG)
        parts = signatures["hash"] % self.partitions
        for part in range(self.partitions):  # every partition gets a file, possibly empty
            with self.folder.open(f"sigs/{part:04d}/{rank:05d}.npy", "wb") as f:
                np.save(f, signatures[parts == part])
        _write_count(self.folder, rank, n)


class SentenceFindDuplicates(PipelineStep):
    """Stage 2: in one partition, keep each repeated sentence in the best-ranked document and
    list its copies in every other document. Holds one partition's hashes in memory."""

    type = "🫂 - DEDUP"
    name = "✂️ substring dedup: find repeated sentences"

    def __init__(self, folder: DataFolderLike):
        super().__init__()
        self.folder = get_datafolder(folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        with self.track_time():
            parts = []
            for name in sorted(self.folder.list_files(subdirectory=f"sigs/{rank:04d}")):
                with self.folder.open(name, "rb") as f:
                    parts.append(np.load(f))
            sigs = np.concatenate(parts) if parts else np.zeros(0, dtype=_SIG)
            sigs.sort(order=["hash", "rank", "doc", "sent"])
            # Only hashes seen more than once reach Python (most sentences are unique).
            starts = np.flatnonzero(np.diff(sigs["hash"], prepend=~sigs["hash"][:1]))
            ends = np.append(starts[1:], len(sigs))
            groups = [sigs[a:b] for a, b in zip(starts, ends, strict=True) if b - a > 1]
            repeated = [g for g in groups if len(np.unique(g[["rank", "doc"]])) > 1]
            info = self._doc_info(
                {(int(r), int(d)) for g in repeated for r, d in g[["rank", "doc"]]}
            )
            removals: dict[int, list[bytes]] = defaultdict(list)
            for group in repeated:
                self.stat_update("repeated_sentences")
                copies = [(int(r), int(d), int(s)) for r, d, s in group[["rank", "doc", "sent"]]]
                kept = min({(r, d) for r, d, _ in copies}, key=lambda rd: info[rd][0])
                kept_id, kept_source = info[kept][1], info[kept][2]
                for r, d, s in copies:
                    if (r, d) != kept:
                        self.stat_update("copies_listed")
                        removals[r].append(orjson.dumps([d, s, kept_id, kept_source]) + b"\n")
            with self.folder.get_output_file_manager(mode="wb") as out:
                for task, lines in sorted(removals.items()):
                    for line in lines:
                        out.write(f"remove/{rank:04d}/{task:05d}.jsonl", line)

    def _doc_info(self, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
        """`(rank, index) -> (keep order, id, source)` of the documents in `wanted`."""
        by_rank: dict[int, set[int]] = defaultdict(set)
        for r, d in wanted:
            by_rank[r].add(d)
        info = {}
        for r, docs in by_rank.items():
            with self.folder.open(f"docs/{r:05d}.jsonl", "rb") as f:
                for index, line in enumerate(f):
                    if index in docs:
                        doc_id, source, length, source_rank = orjson.loads(line)
                        info[r, index] = (keep_order(length, source_rank, doc_id), doc_id, source)
        return info


class SentenceSpanFilter(PipelineStep):
    """Stage 3: cut the listed runs of sentences that reach `min_words` words; keep the rest.

    Each kept document that lost text gets `metadata["substring_cut"]` (characters cut) and a
    record in `cuts_writer`'s output: `{"id", "source", "chars_before", "chars_after", "cuts":
    [{"start", "end", "words", "text_prefix", "duplicate_of", "duplicate_of_source"}]}`
    (`start`/`end`: character offsets in the text before the cut). A document left with fewer
    than `min_doc_words` words (or none) goes to `exclusion_writer` as `substring_too_short`.

    Raises:
        RuntimeError: this task reads a different number of documents than stage 1 did.
    """

    type = "🫂 - DEDUP"
    name = "✂️ substring dedup: cut"

    def __init__(
        self,
        folder: DataFolderLike,
        min_words: int,
        min_doc_words: int,
        exclusion_writer: ExclusionWriter,
        cuts_writer: CutsWriter,
    ):
        super().__init__()
        self.folder = get_datafolder(folder)
        self.min_words, self.min_doc_words = min_words, min_doc_words
        self.exclusion_writer, self.cuts_writer = exclusion_writer, cuts_writer
        self.tokenizers = _Tokenizers()

    def _removals(self, rank: int) -> dict[int, dict[int, tuple[str, str]]]:
        removals: dict[int, dict[int, tuple[str, str]]] = defaultdict(dict)
        for name in self.folder.list_files(subdirectory="remove", recursive=True):
            if name.endswith(f"/{rank:05d}.jsonl"):
                with self.folder.open(name, "rb") as f:
                    for line in f:
                        index, sentence, kept_id, kept_source = orjson.loads(line)
                        removals[index][sentence] = (kept_id, kept_source)
        return removals

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        removals = self._removals(rank)
        n = 0
        with self.exclusion_writer as excluded, self.cuts_writer as cuts:
            for index, doc in enumerate(data):
                n += 1
                self.stat_update("total")
                if index in removals:
                    with self.track_time():
                        record = self._cut(doc, removals[index])
                    if record is not None:
                        if not doc.text.strip() or record["words_after"] < self.min_doc_words:
                            kept = record["cuts"][0]
                            self.stat_update("dropped", "dropped_substring_too_short")
                            excluded.write_excluded(
                                doc, rank, "substring_too_short", kept["duplicate_of"],
                                kept["duplicate_of_source"],
                            )  # fmt: skip
                            continue
                        cuts.write(Document(text="", id=doc.id, metadata=record), rank)
                self.stat_update("forwarded")
                yield doc
        _check_count(self.folder, rank, n, self.name)

    def _cut(self, doc: Document, listed: dict[int, tuple[str, str]]) -> dict | None:
        """Cut the long enough runs of listed sentences from `doc.text`; the cut record, or
        None when no run was long enough."""
        tokenizer = self.tokenizers(doc)
        spans = sentence_spans(doc.text, tokenizer)
        runs, run = [], []
        for s in sorted(i for i in listed if i < len(spans)):
            if run and s != run[-1] + 1:
                runs.append(run)
                run = []
            run.append(s)
        if run:
            runs.append(run)
        text, cuts = doc.text, []
        for run in runs:
            start, end = spans[run[0]][0], spans[run[-1]][1]
            words = sum(spans[i][2] for i in run)
            if words < self.min_words:
                self.stat_update("runs_too_short_to_cut")
                continue
            kept_id, kept_source = listed[run[0]]
            cuts.append({"start": start, "end": end, "words": words,
                         "text_prefix": text[start:end][:TEXT_PREFIX_CHARS],
                         "duplicate_of": kept_id, "duplicate_of_source": kept_source})  # fmt: skip
        if not cuts:
            return None
        pieces, position = [], 0
        for cut in cuts:
            pieces.append(text[position : cut["start"]])
            position = cut["end"]
        pieces.append(text[position:])
        doc.text = _join(pieces)
        chars = len(text) - len(doc.text)
        doc.metadata["substring_cut"] = chars
        words_left = sum(w for _, _, w in spans) - sum(c["words"] for c in cuts)
        self.stat_update("documents_cut")
        self.stat_update("spans_cut", value=len(cuts))
        self.stat_update("chars_cut", value=chars)
        return {"source": _source(doc), "chars_before": len(text), "chars_after": len(doc.text),
                "words_after": words_left, "cuts": cuts}  # fmt: skip


def _count_words(text: str, tokenizer: WordTokenizer) -> int:
    """Words of `text`: the tokenizer's tokens with a letter or digit (punctuation is no word)."""
    return sum(1 for token in tokenizer.word_tokenize(text) if any(c.isalnum() for c in token))


def _join(pieces: list[str]) -> str:
    """The text around the cuts, the whitespace at each seam the wider of its two sides' (a
    cut paragraph leaves one paragraph break, not two)."""
    out = pieces[0]
    for piece in pieces[1:]:
        body, right = out.rstrip(), piece.lstrip()
        left_gap, right_gap = out[len(body) :], piece[: len(piece) - len(right)]
        seam = max(left_gap, right_gap, key=lambda gap: (gap.count("\n"), len(gap)))
        out = body + (seam if body and right else "") + right
    return out.strip()


class CutsWriter(JsonlWriter):
    """JSONL of what `SentenceSpanFilter` cut, one record per document that lost text."""

    name = "✂️ Substring cuts"

    def __init__(self, output_folder: DataFolderLike):
        super().__init__(output_folder, output_filename="${rank}.jsonl.gz", adapter=_cut_record)


def _cut_record(self, doc: Document) -> dict:
    return {"id": doc.id, **doc.metadata}
