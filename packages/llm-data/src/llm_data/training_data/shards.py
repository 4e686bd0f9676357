"""Tokenize curated JSONL into packed MDS token shards, one stream per source (extra [shards]).

Documents are tokenized by the caller's tokenizer (the stack's protocol: `encode_batch`,
`eos_id`, `vocab_size`; the app passes `llm_tokenize.Tokenizer`, so shards and evaluation encode
text identically), each followed by the EOS id, concatenated and cut into samples of
`seq_len + 1` tokens (inputs plus the shifted labels). A deterministic slice of documents,
chosen by a hash of their id, is held out as raw text for bits-per-byte evaluation instead of
being sharded.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import xxhash
from tqdm import tqdm

from llm_data.atomic import make_temp_dir, remove_stale_temp_dirs
from llm_data.readers import InputError
from llm_formats.documents import Document, curated_sources, read_documents
from llm_formats.heldout import HELDOUT_FILE, HeldoutRecord, write_heldout
from llm_formats.jsonl import FormatError
from llm_formats.shards import SHARD_STATS_FILE, source_dir, write_shard_stats

__all__ = ["HELDOUT_FILE", "SHARD_STATS_FILE", "is_heldout", "tokenize_to_shards"]
# HELDOUT_FILE and SHARD_STATS_FILE stay importable from here (llm_formats defines them).

log = logging.getLogger(__name__)
_TOKENS_COLUMN = "tokens"
_BATCH_DOCS = 64


def is_heldout(source: str, doc_id: str, fraction: float, seed: int) -> bool:
    """Whether a document belongs to the held-out split: a stable hash of (seed, source, id)."""
    digest = xxhash.xxh64_intdigest(f"{seed}\x00{source}\x00{doc_id}".encode())
    return digest / 2**64 < fraction


def list_curated_sources(curated_dir: Path) -> dict[str, list[Path]]:
    """Map each source folder of a curation output to its sorted `*.jsonl[.gz]` files."""
    sources = curated_sources(curated_dir)
    if not sources:
        raise InputError(f"curated_dir {str(curated_dir)!r} has no <source>/*.jsonl[.gz] files")
    return sources


def iter_documents(files: list[Path]) -> Iterator[Document]:
    """The curated documents of ``files`` in order, raising `InputError` on a bad record."""
    for path in files:
        try:
            yield from read_documents(path)
        except FormatError as err:
            raise InputError(str(err)) from err


def check_tokenizer(tokenizer) -> None:
    """Raise TypeError unless `tokenizer` has the protocol the shards need."""
    missing = [a for a in ("encode_batch", "eos_id", "vocab_size") if not hasattr(tokenizer, a)]
    if missing:
        raise TypeError(
            "tokenizer must have encode_batch(texts) -> list of id lists, eos_id and vocab_size "
            f"(e.g. llm_tokenize.Tokenizer.from_file(path)); got {type(tokenizer).__name__} "
            f"without {', '.join(missing)}"
        )


class _Packer:
    """Concatenate token lists and emit fixed-length samples to an MDSWriter."""

    def __init__(self, writer, sample_len: int, dtype: np.dtype):
        self.writer, self.sample_len, self.dtype = writer, sample_len, dtype
        self.buffer: list[int] = []
        self.samples = 0

    def add(self, tokens: list[int]) -> None:
        self.buffer.extend(tokens)
        n_full = len(self.buffer) // self.sample_len
        for i in range(n_full):
            chunk = self.buffer[i * self.sample_len : (i + 1) * self.sample_len]
            self.writer.write({_TOKENS_COLUMN: np.asarray(chunk, dtype=self.dtype)})
        self.samples += n_full
        del self.buffer[: n_full * self.sample_len]


def tokenize_to_shards(
    curated_dir: str | Path,
    tokenizer,
    out_dir: str | Path,
    *,
    seq_len: int,
    heldout_fraction: float = 0.01,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write one MDS stream per source to `out_dir/<source>/`, plus held-out text and stats.

    Args:
        curated_dir: output of `run_curation` (`<source>/*.jsonl.gz` with "id" and "text").
        tokenizer: an object with `encode_batch(texts) -> list[list[int]]` (no special tokens
            added; special-token strings in the text encode as text), `eos_id` and
            `vocab_size`, e.g. `llm_tokenize.Tokenizer.from_file("tokenizer.json")`. Taken as an
            object so that shards and evaluation share one loader (llm-data does not depend on
            llm-tokenize).
        out_dir: destination, written atomically (built beside it, then renamed).
        seq_len: model context; each sample holds `seq_len + 1` tokens.
        heldout_fraction: share of documents (by id hash) kept out of the shards and written
            to `out_dir/heldout.jsonl` as `{"id", "text", "source"}`, plus `"language"` where
            the curated record has `metadata.language`.
        seed: changes which documents are held out.
        overwrite: replace an existing `out_dir`.

    Temp folders of earlier runs killed before they finished (`.<out_dir>.tmp-<host>-<pid>-*`
    of a dead process) are removed first.

    Returns:
        The stats also saved to `out_dir/shard_stats.json`: per source `docs`, `heldout_docs`,
        `tokens` (written into samples), `samples`, `tokens_dropped` (the last partial sample).
    """
    from streaming import MDSWriter  # noqa: F401  (without [shards], fail before any check)

    _check_shard_args(seq_len, heldout_fraction)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not overwrite:
        raise FileExistsError(f"out_dir={str(out)!r} exists; pass overwrite=True to replace it")
    check_tokenizer(tokenizer)
    sources = list_curated_sources(Path(curated_dir))
    eos_id, vocab_size = int(tokenizer.eos_id), int(tokenizer.vocab_size)
    dtype = np.dtype(np.uint16 if vocab_size < 2**16 else np.uint32)
    stats = {"seq_len": seq_len, "sample_len": seq_len + 1, "dtype": dtype.name, "eos_id": eos_id}
    stats |= {"vocab_size": vocab_size, "heldout_fraction": heldout_fraction, "seed": seed}
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out)
    tmp = make_temp_dir(out)
    try:
        stats["sources"] = _write_streams(tmp, sources, tokenizer, stats)
        write_shard_stats(tmp, stats)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


def _check_shard_args(seq_len: int, heldout_fraction: float) -> None:
    """Refuse bad settings before anything is read or written."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} is invalid: expected an integer >= 1")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction!r} is invalid: expected [0, 1)")


def _write_streams(tmp: Path, sources: dict[str, list[Path]], tokenizer, stats: dict) -> dict:
    """One MDS stream per source under ``tmp``, and the held-out file; per-source stats.

    ``stats`` supplies seq_len, dtype, eos_id, heldout_fraction and seed.
    """
    from streaming import MDSWriter

    seq_len, dtype = stats["seq_len"], np.dtype(stats["dtype"])
    columns = {_TOKENS_COLUMN: f"ndarray:{dtype.name}:{seq_len + 1}"}
    per_source = {}
    with open(tmp / HELDOUT_FILE, "w", encoding="utf-8") as heldout:
        for name, files in sources.items():
            mds = str(source_dir(tmp, name))
            with MDSWriter(out=mds, columns=columns, hashes=["sha1", "xxh64"]) as w:
                packer = _Packer(w, seq_len + 1, dtype)
                per_source[name] = _shard_source(
                    name, files, tokenizer, stats["eos_id"], packer, heldout,
                    stats["heldout_fraction"], stats["seed"],
                )  # fmt: skip
    return per_source


def _shard_source(name, files, tokenizer, eos_id, packer, heldout, fraction, seed) -> dict:
    """Tokenize one source into ``packer`` in batches, its held-out documents into ``heldout``."""
    docs = held = tokens = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal tokens
        for ids in tokenizer.encode_batch(batch):
            packer.add([*ids, eos_id])
            tokens += len(ids) + 1
        batch.clear()

    for doc in tqdm(iter_documents(files), desc=f"shard {name}", unit="doc"):
        if is_heldout(name, doc.id, fraction, seed):
            write_heldout(heldout, HeldoutRecord(doc.id, doc.text, name, doc.language))
            held += 1
            continue
        docs += 1
        batch.append(doc.text)
        if len(batch) >= _BATCH_DOCS:
            flush()
    flush()
    dropped = len(packer.buffer)
    log.info("source %r: %d docs, %d samples, %d tokens", name, docs, packer.samples, tokens)
    return {
        "docs": docs,
        "heldout_docs": held,
        "tokens": tokens - dropped,
        "samples": packer.samples,
        "tokens_dropped": dropped,
    }
