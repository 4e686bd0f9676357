"""What each stage reads besides its config: the files the stage cache fingerprints.

A stage is up to date only when its config sections *and* its inputs are unchanged, so a file
added to a source folder re-runs curation, and what depends on the curated documents runs again
only if they changed. Inputs outside the run directory (source files, eval task files) are
fingerprinted by path, size and ``mtime_ns``: reading them whole (possibly many gigabytes) on
every ``pretrain`` would cost as much as a stage, and any rewrite changes the mtime (a file
touched without a change re-runs a stage, never the reverse). The curated documents, inside the
run directory, by path and size plus the hash of ``curation_stats.json``, which each curation
writes (so a run directory copied without mtimes stays up to date). The small files
a stage reads from the run directory (``tokenizer.json``, ``shard_stats.json``, each MDS
``index.json``, a checkpoint's manifest) are hashed: a stage rebuilt with identical output
leaves the stages after it up to date.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_formats import rundir as layout
from llm_formats.atomic import sha256_file
from llm_formats.checkpoint import MANIFEST
from llm_formats.documents import curated_sources
from pretrain.config import PretrainConfig
from pretrain.rundir import checkpoint_dir, checkpoint_name


def inputs_hash(config: PretrainConfig, run_dir: Path, name: str) -> str:
    """Digest of the files stage ``name`` reads (see the module docstring for how)."""
    return digest(_INPUTS[name](config, run_dir) if name in _INPUTS else {})


def digest(value: Any) -> str:
    """16 hex digits of the sha256 of ``value`` as sorted JSON: the stage cache's hashes."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _curate(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    """Every source's file list with sizes and mtimes (a URL source: its file list), and the
    quality classifier's sha256 (from its card) when it is on."""
    from llm_data.readers import is_url, resolve_source_files

    out = {}
    for source in config.data.sources:
        base, files = resolve_source_files(source)
        if is_url(source.path):
            out[source.name] = files
        else:
            out[source.name] = [_stat(Path(base) / f, Path(base)) for f in files]
    if config.data.classifier.enabled:  # a model retrained at the same path re-runs curation
        from llm_data.classifier_card import read_card

        out["_classifier"] = read_card(config.data.classifier.model)["model_sha256"]
    return out


def _tokenizer(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    explicit = [p for s in config.tokenizer.sources for p in s.paths]
    return {"curated": _curated(run_dir), "paths": [_tree(Path(p)) for p in explicit]}


def _shards(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    return {"curated": _curated(run_dir), "tokenizer": _sha(run_dir / layout.TOKENIZER)}


def _train(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    shards = run_dir / layout.SHARDS
    indexes = sorted(shards.rglob("index.json")) if shards.is_dir() else []
    return {
        "tokenizer": _sha(run_dir / layout.TOKENIZER),
        "shard_stats": _sha(run_dir / layout.SHARD_STATS),
        "indexes": {p.relative_to(shards).as_posix(): _sha(p) for p in indexes},
    }


def _eval(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    from llm_train.checkpoint import list_checkpoints

    found = list_checkpoints(checkpoint_dir(run_dir, config.train.checkpoint_dir))
    newest = {checkpoint_name(found[0]): _manifest_sha(found[0])} if found else {}
    files = [*config.eval.tasks, *config.eval.bpb_sets.values()]
    return {
        "checkpoint": newest,
        "tokenizer": _sha(run_dir / layout.TOKENIZER),
        "heldout": _stat(run_dir / layout.HELDOUT, run_dir)[:2],  # written with shard_stats
        "files": [_tree(Path(p)) for p in files],
    }


def _manifest_sha(checkpoint: Path | str) -> str | None:
    """The sha256 of a checkpoint's manifest, in a folder or in object storage."""
    if isinstance(checkpoint, Path):
        return _sha(checkpoint / MANIFEST)
    from llm_formats.checkpoint import ManifestError
    from llm_train.checkpoint import read_checkpoint_manifest

    try:
        return digest(read_checkpoint_manifest(checkpoint))
    except ManifestError:
        return None


_INPUTS = {
    "curate": _curate,
    "tokenizer": _tokenizer,
    "shards": _shards,
    "train": _train,
    "eval": _eval,
}


def _curated(run_dir: Path) -> dict[str, Any]:
    """The curated files' paths and sizes and the sha256 of ``curation_stats.json`` (written by
    every curation): no mtimes, so a run directory copied without them stays up to date."""
    from llm_data.curation import STATS_FILE

    curated = run_dir / layout.CURATED
    if not curated.is_dir():
        return {}
    files = {name: _stats(paths, curated) for name, paths in curated_sources(curated).items()}
    sizes = {name: [stat[:2] for stat in stats] for name, stats in files.items()}
    return {"stats": _sha(curated / STATS_FILE), "files": sizes}


def _tree(path: Path) -> list[Any]:
    """A file's or a folder's files' stats (a path that is neither: its name only)."""
    if path.is_dir():
        return _stats(sorted(p for p in path.rglob("*") if p.is_file()), path)
    return [_stat(path, path.parent)]


def _stats(files: Iterable[Path], base: Path) -> list[Any]:
    return [_stat(f, base) for f in files]


def _stat(path: Path, base: Path) -> list[Any]:
    """[path relative to ``base``, size, mtime_ns], or [path, None] when it does not exist."""
    rel = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
    if not path.is_file():
        return [rel, None]
    st = path.stat()
    return [rel, st.st_size, st.st_mtime_ns]


def _sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None
