"""Tokenize curated JSONL into packed MDS token shards, one stream per source (extra [shards]).

Documents are tokenized by the caller's tokenizer (the stack's protocol: `encode_batch`,
`eos_id`, `vocab_size`; the app passes `llm_tokenize.Tokenizer`, so shards and evaluation encode
text identically), each followed by the EOS id, concatenated and cut into samples of
`seq_len + 1` tokens (inputs plus the shifted labels). A deterministic slice of documents,
chosen by a hash of their id, is held out as raw text for bits-per-byte evaluation instead of
being sharded.

The work runs as datatrove tasks on curation's executors (`llm_data.executors`: local pool,
Slurm job array, Ray), each over a contiguous share of the curated files, writing its own MDS
folder `<source>/<rank>/` (with `mds_writer.TokenShardWriter`: MDSWriter's files without
importing torch in the task); `finalize` merges the indexes per source. Packing is per file,
so the output does not depend on the task count.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import xxhash
from datatrove.pipeline.base import PipelineStep

from llm_data.atomic import make_temp_dir, remove_stale_temp_dirs
from llm_data.executors import Stage, run_stages, submit_slurm_with_finalize
from llm_data.readers import InputError
from llm_data.training_data.mds_writer import TokenShardWriter
from llm_data.training_data.remote import committed, is_url, upload
from llm_formats.atomic import atomic_write_text
from llm_formats.documents import Document, curated_sources, read_documents
from llm_formats.heldout import HELDOUT_FILE, HeldoutRecord, write_heldout
from llm_formats.jsonl import FormatError
from llm_formats.shards import SHARD_STATS_FILE, read_shard_stats, source_dir, write_shard_stats

if TYPE_CHECKING:
    from llm_data.config import CurationConfig

__all__ = ["HELDOUT_FILE", "SHARD_STATS_FILE", "is_heldout", "pack", "tokenize_to_shards"]
# HELDOUT_FILE and SHARD_STATS_FILE stay importable from here (llm_formats defines them).

log = logging.getLogger(__name__)
# One encode_batch call: at most this many documents or characters (whichever comes first),
# so the memory it takes (the tokenizer's per-token Encoding, then Python ints) is bounded by
# the batch, not by the number of documents in a file.
_BATCH_DOCS = 64
_BATCH_CHARS = 1 << 20


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


def pack(
    carry: np.ndarray, docs: list[list[int]], eos_id: int, sample_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Append each of ``docs`` plus EOS to ``carry`` and cut the result into samples.

    Returns:
        ``(rows, rest)``: the full ``(n, sample_len)`` samples and the tokens left over (fewer
        than ``sample_len``), to be passed as the next call's ``carry``. Same dtype as ``carry``.
    """
    total = sum(len(ids) + 1 for ids in docs)
    flat = np.empty(len(carry) + total, dtype=carry.dtype)
    flat[: len(carry)] = carry
    # One C-level pass over the token lists; only the per-document loop is Python.
    flat[len(carry) :] = np.fromiter(
        chain.from_iterable(chain(ids, (eos_id,)) for ids in docs), dtype=carry.dtype, count=total
    )
    n = len(flat) // sample_len
    return flat[: n * sample_len].reshape(n, sample_len), flat[n * sample_len :].copy()


def tokenize_to_shards(
    curated_dir: str | Path,
    tokenizer,
    out_dir: str | Path,
    *,
    seq_len: int,
    heldout_fraction: float = 0.01,
    seed: int = 0,
    overwrite: bool = False,
    tasks: int = 1,
    workers: int = 1,
    run_config: CurationConfig | None = None,
    staging_dir: str | Path | None = None,
) -> dict:
    """Write one MDS stream per source to `out_dir/<source>/`, plus held-out text and stats.

    The curated files are split into `tasks` contiguous shares (balanced by bytes), each
    tokenized by one datatrove task (on the executor of `run_config`) into its own MDS folder
    `<source>/<rank>/`; a final step merges each source's index (`merge_index`, streaming's format),
    the held-out parts and the stats. Each curated file is packed on its own (its last partial
    sample is dropped), and the held-out split is a hash of each document's id, so the samples,
    their order, the held-out file and the stats do not depend on `tasks`.

    Args:
        curated_dir: output of `run_curation` (`<source>/*.jsonl.gz` with "id" and "text").
        tokenizer: an object with `encode_batch(texts) -> list[list[int]]` (no special tokens
            added; special-token strings in the text encode as text), `eos_id` and
            `vocab_size`, e.g. `llm_tokenize.Tokenizer.from_file("tokenizer.json")`. Taken as an
            object so that shards and evaluation share one loader (llm-data does not depend on
            llm-tokenize). It must pickle (it travels to the tasks).
        out_dir: destination, written atomically (built beside it, then renamed); or a URL
            (``s3://bucket/run/shards``, extra [s3]): built in ``staging_dir``, then uploaded
            with ``shard_stats.json`` last as the commit marker (`llm_data.training_data.remote`).
        seq_len: model context; each sample holds `seq_len + 1` tokens.
        heldout_fraction: share of documents (by id hash) kept out of the shards and written
            to `out_dir/heldout.jsonl` as `{"id", "text", "source"}`, plus `"language"` where
            the curated record has `metadata.language`.
        seed: changes which documents are held out.
        overwrite: replace an existing `out_dir`.
        tasks: datatrove tasks (at most one per curated file is useful; more are capped).
        workers: tasks running at once (local and Ray executors).
        run_config: where the tasks run: its `executor` ("local", "ray" or "slurm"),
            `skip_completed`, `slurm` and `ray` settings (not its workers or tasks). Default:
            local processes, resumable.
        staging_dir: with a URL ``out_dir``, the local folder the shards are built in before
            the upload (on a filesystem every task sees, with Slurm); default: one named after
            the URL under the system's temp folder. Removed once the upload committed.

    With `skip_completed` (the default) the work folder is `.<out_dir name>.partial` beside
    `out_dir`; a run killed or failed there is resumed by running again with the same
    settings, curated files and tokenizer: tasks with datatrove's completion marker are
    skipped, the others start over (a task clears its own folders first). Temp folders of
    earlier runs killed before they finished (`.<out_dir>.tmp-<host>-<pid>-*` of a dead
    process) are removed first. With a URL ``out_dir``, an upload cut off (the error names the
    object) is resumed by the same rerun: the staged shards are uploaded again, the objects
    already in the store kept.

    Returns:
        The stats also saved to `out_dir/shard_stats.json`: per source `docs`, `heldout_docs`,
        `tokens` (written into samples), `samples`, `tokens_dropped` (the last partial sample
        of each file). With `executor: slurm` the jobs are only submitted:
        `{"executor": "slurm", "jobs": {stage: job id}, "work_dir": ...}`.
    """
    if importlib.util.find_spec("streaming") is None:  # fail before any check or work
        raise ModuleNotFoundError("tokenize_to_shards needs the [shards] extra (streaming)")
    _check_shard_args(seq_len, heldout_fraction, tasks, workers)
    remote = str(out_dir).rstrip("/") if is_url(out_dir) else None
    out = _staged_out(remote, staging_dir) if remote else Path(out_dir).expanduser().resolve()
    if not overwrite and (committed(remote) if remote else out.exists()):
        shown = remote or str(out)
        raise FileExistsError(f"out_dir={shown!r} exists; pass overwrite=True to replace it")
    if remote and run_config is not None and run_config.executor == "slurm" and not staging_dir:
        raise ValueError(f"out_dir={remote!r} with executor slurm: give a shared staging_dir")
    check_tokenizer(tokenizer)
    sources = list_curated_sources(Path(curated_dir))
    files = [(name, str(path)) for name, paths in sources.items() for path in paths]
    eos_id, vocab_size = int(tokenizer.eos_id), int(tokenizer.vocab_size)
    dtype = np.dtype(np.uint16 if vocab_size < 2**16 else np.uint32)
    stats = {"seq_len": seq_len, "sample_len": seq_len + 1, "dtype": dtype.name, "eos_id": eos_id}
    stats |= {"vocab_size": vocab_size, "heldout_fraction": heldout_fraction, "seed": seed}
    runs = _executor_settings(run_config, workers)
    tasks = min(tasks, len(files))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out)
    fingerprint = _fingerprint(stats, tasks, files, tokenizer)
    target = _Target(out, remote, fingerprint)
    if remote and target.staged():  # built by a run whose upload was cut off: upload it
        return target.publish(read_shard_stats(out))
    root = _work_folder(out, runs, fingerprint)
    sizes = [os.path.getsize(path) for _, path in files]
    stage = Stage(_STAGE, [ShardTask(root, files, sizes, tokenizer, stats)], tasks)
    try:
        if runs.executor == "slurm":
            return _submit(stage, runs, root, target, list(sources))
        run_stages([stage], runs, root / _WORK / "logs")
        return target.publish(finalize(root, out, list(sources), tasks, stats))
    except BaseException as err:
        # Bad input must change before a rerun (and so the fingerprint): nothing to resume.
        if not runs.skip_completed or isinstance(err, InputError):
            shutil.rmtree(root, ignore_errors=True)
        else:
            log.error("shards failed; run again with the same settings to resume (%s)", root)
        raise


_STAGE = "shards"
_WORK = "_work"  # scratch in the work folder (task parts, logs), removed before the rename


def _check_shard_args(seq_len: int, heldout_fraction: float, tasks: int, workers: int) -> None:
    """Refuse bad settings before anything is read or written."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} is invalid: expected an integer >= 1")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction!r} is invalid: expected [0, 1)")
    for name, value in (("tasks", tasks), ("workers", workers)):
        if value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1")


def _executor_settings(run_config: CurationConfig | None, workers: int):
    """What `run_stages` reads of a curation config: executor, workers, skip_completed, ray."""
    if run_config is None:
        return SimpleNamespace(executor="local", workers=workers, skip_completed=True)
    return SimpleNamespace(
        executor=run_config.executor,
        workers=workers,
        skip_completed=run_config.skip_completed,
        slurm=run_config.slurm,
        ray=run_config.ray,
    )


def _share(sizes: list[int], rank: int, world_size: int) -> list[int]:
    """The files of task `rank`: contiguous (rank order is file order) and balanced by bytes.

    File `i` goes to the task whose equal slice of all the bytes holds the file's middle byte
    (a file counts its size + 1, so empty files still spread), so one big source does not
    leave a few tasks with all the work. A task may get no file.
    """
    weights = np.asarray(sizes, dtype=np.float64) + 1
    middles = np.cumsum(weights) - weights / 2
    owners = np.minimum((middles * world_size / weights.sum()).astype(int), world_size - 1)
    return np.flatnonzero(owners == rank).tolist()


def _task_dir(root: Path, rank: int) -> Path:
    return root / _WORK / "tasks" / f"{rank:05d}"


class ShardTask(PipelineStep):
    """One datatrove task: tokenize its share of the curated files into `<source>/<rank>/`."""

    name = "🔢 Shards"

    def __init__(
        self, root: Path, files: list[tuple[str, str]], sizes: list[int], tokenizer, stats: dict
    ):
        super().__init__()
        self.root, self.files, self.sizes = root, files, sizes
        self.tokenizer, self.settings = tokenizer, stats

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        mine = [self.files[i] for i in _share(self.sizes, rank, world_size)]
        by_source: dict[str, list[str]] = {}
        for name, path in mine:
            by_source.setdefault(name, []).append(path)
        parts = _task_dir(self.root, rank)
        # A task killed before its completion marker left these half-written: start over.
        shutil.rmtree(parts, ignore_errors=True)
        for name in by_source:
            shutil.rmtree(source_dir(self.root, name) / f"{rank:05d}", ignore_errors=True)
        parts.mkdir(parents=True)
        dtype, sample_len = np.dtype(self.settings["dtype"]), self.settings["sample_len"]
        per_source = {}
        with open(parts / HELDOUT_FILE, "w", encoding="utf-8") as heldout:
            for name, paths in by_source.items():
                mds = str(source_dir(self.root, name) / f"{rank:05d}")
                with TokenShardWriter(mds, sample_len, dtype) as writer:
                    counts = [self._shard_file(name, Path(p), writer, heldout) for p in paths]
                per_source[name] = {k: sum(c[k] for c in counts) for k in counts[0]}
                self.stat_update("samples", value=per_source[name]["samples"])
        atomic_write_text(parts / "stats.json", json.dumps(per_source))

    def _shard_file(self, name: str, path: Path, writer, heldout) -> dict:
        """Pack one file's kept documents into ``writer``; its held-out ones into ``heldout``."""
        s = self.settings
        carry = np.empty(0, dtype=np.dtype(s["dtype"]))
        counts = dict.fromkeys(("docs", "heldout_docs", "tokens", "samples"), 0)
        batch: list[str] = []
        chars = 0

        def flush() -> None:
            nonlocal carry, chars
            encoded = self.tokenizer.encode_batch(batch)
            rows, carry = pack(carry, encoded, s["eos_id"], s["sample_len"])
            writer.write(rows)
            counts["samples"] += len(rows)
            counts["tokens"] += rows.size
            batch.clear()
            chars = 0

        for doc in iter_documents([path]):
            if is_heldout(name, doc.id, s["heldout_fraction"], s["seed"]):
                write_heldout(heldout, HeldoutRecord(doc.id, doc.text, name, doc.language))
                counts["heldout_docs"] += 1
                continue
            counts["docs"] += 1
            batch.append(doc.text)
            chars += len(doc.text)
            if len(batch) >= _BATCH_DOCS or chars >= _BATCH_CHARS:
                flush()
        flush()
        counts["tokens_dropped"] = len(carry)
        log.info("%s: %d docs, %d samples", path, counts["docs"], counts["samples"])
        return counts


def finalize(root: Path, out: Path, sources: list[str], tasks: int, stats: dict) -> dict:
    """Merge the tasks' indexes, held-out parts and stats in rank order; rename `root` to `out`."""
    per_source: dict[str, dict] = {}
    with open(root / HELDOUT_FILE, "w", encoding="utf-8") as heldout:
        for rank in range(tasks):
            parts = _task_dir(root, rank)
            with open(parts / HELDOUT_FILE, encoding="utf-8") as part:
                shutil.copyfileobj(part, heldout)
            for name, counts in json.loads((parts / "stats.json").read_text()).items():
                total = per_source.setdefault(name, dict.fromkeys(counts, 0))
                for key, value in counts.items():
                    total[key] += value
    for name in sources:
        merge_index(source_dir(root, name))
    stats = {**stats, "sources": {name: per_source[name] for name in sources}}
    for name, s in stats["sources"].items():
        log.info(
            "source %r: %d docs, %d samples, %d tokens", name, s["docs"], s["samples"], s["tokens"]
        )
    write_shard_stats(root, stats)
    shutil.rmtree(root / _WORK)
    if out.exists():
        shutil.rmtree(out)
    root.rename(out)
    return stats


def merge_index(folder: Path) -> None:
    """Write `folder/index.json` listing the shards of every task folder `folder/<rank>/`, in
    rank order: what streaming's `merge_index` writes for local folders, without importing
    streaming (with torch and transformers, ~10 s of CPU in each process that does)."""
    shards = []
    for index in sorted(folder.glob("[0-9]*/index.json")):
        for shard in json.loads(index.read_text())["shards"]:
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(key):
                    shard[key]["basename"] = f"{index.parent.name}/{shard[key]['basename']}"
            shards.append(shard)
    atomic_write_text(folder / "index.json", json.dumps({"version": 2, "shards": shards}))


class _Target:
    """Where finished shards go: the local folder ``out``, or, with ``remote``, the URL they
    are uploaded to from ``out`` (the staging copy, removed once the upload committed)."""

    def __init__(self, out: Path, remote: str | None, fingerprint: str):
        self.out, self.remote, self.fingerprint = out, remote, fingerprint
        self._record = out.parent / f"{out.name}.fingerprint"  # what the staged copy holds

    def staged(self) -> bool:
        """Whether ``out`` is a finished staging copy of these settings and inputs."""
        recorded = self._record.read_text() if self._record.is_file() else None
        return recorded == self.fingerprint and (self.out / SHARD_STATS_FILE).is_file()

    def publish(self, stats: dict) -> dict:
        """Upload the finished ``out`` (if remote); returns ``stats``."""
        if self.remote is None:
            return stats
        atomic_write_text(self._record, self.fingerprint)
        upload(self.out, self.remote, self.fingerprint)  # UploadError: the staged copy stays
        shutil.rmtree(self.out)
        self._record.unlink()
        return stats


def _staged_out(remote: str, staging_dir: str | Path | None) -> Path:
    """The local folder shards for ``remote`` are built in."""
    if staging_dir is None:
        name = hashlib.sha256(remote.encode()).hexdigest()[:16]
        staging_dir = Path(tempfile.gettempdir()) / "llm-data-shards" / name
    return Path(staging_dir).expanduser().resolve() / "shards"


def _submit(stage: Stage, runs, root: Path, target: _Target, sources: list[str]) -> dict:
    """Submit the shard tasks as a Slurm array and a one-task job that runs `finalize`."""
    out = target.out
    final = Stage(
        "_finalize",
        [_Finalize(root, target, sources, stage.tasks, stage.pipeline[0].settings)],
        1,
        (stage.name,),
    )
    return submit_slurm_with_finalize([stage], final, runs, root, root / _WORK / "logs", out)


class _Finalize(PipelineStep):
    """Run `finalize` (and the upload, for a URL) as the last Slurm job."""

    name = "🏁 Finalize shards"

    def __init__(self, root: Path, target: _Target, sources: list[str], tasks: int, stats: dict):
        super().__init__()
        self.target, self.args = target, (root, target.out, sources, tasks, stats)

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        self.target.publish(finalize(*self.args))


# --- the work folder: a fresh temp folder, or a resumable `.partial` one -------------------


def _work_folder(out: Path, runs, fingerprint: str) -> Path:
    if not runs.skip_completed and runs.executor != "slurm":
        return make_temp_dir(out)
    root = out.parent / f".{out.name}.partial"
    saved = root / _WORK / "fingerprint"
    if root.exists() and (not saved.is_file() or saved.read_text() != fingerprint):
        log.info("%s was left by a run of other settings or input: starting over", root)
        shutil.rmtree(root)
    elif root.exists():
        log.info("resuming from %s: completed tasks are skipped", root)
    (root / _WORK).mkdir(parents=True, exist_ok=True)
    saved.write_text(fingerprint)
    return root


_PROBE = "The tokenizer's fingerprint: ünïcödé, 12345, <|endoftext|> def f(x): return x"


def _fingerprint(stats: dict, tasks: int, files: list[tuple[str, str]], tokenizer) -> str:
    """Hash of what the outputs depend on: settings, task count, curated files, tokenizer."""
    listed = [
        (name, path, os.stat(path).st_size, os.stat(path).st_mtime_ns) for name, path in files
    ]
    probe = [list(ids) for ids in tokenizer.encode_batch([_PROBE])]
    blob = json.dumps([stats, tasks, listed, probe], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
