"""Token shards' layout and statistics: ``shards/<source>/`` (one MDS stream per source),
``shards/shard_stats.json`` and ``shards/heldout.jsonl`` (see `llm_formats.heldout`).

``shard_stats.json`` is the folder's table of contents: the loader reads the sources and their
sample counts from it, the mixture its token counts, the scaling ladder its seq_len and vocab.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_text
from llm_formats.jsonl import FormatError

__all__ = ["SHARD_STATS_FILE", "read_shard_stats", "source_dir", "source_samples",
           "write_shard_stats"]  # fmt: skip

SHARD_STATS_FILE = "shard_stats.json"
_TOP = {"seq_len": int, "sample_len": int, "dtype": str, "eos_id": int, "vocab_size": int,
        "heldout_fraction": (int, float), "seed": int, "sources": dict}  # fmt: skip
_PER_SOURCE = ("docs", "heldout_docs", "tokens", "samples", "tokens_dropped")


def source_dir(shards_dir: str | os.PathLike, source: str) -> Path:
    """The MDS folder of one source."""
    return Path(shards_dir) / source


def write_shard_stats(shards_dir: str | os.PathLike, stats: dict[str, Any]) -> Path:
    """Write ``shard_stats.json`` (validated first, written atomically)."""
    path = Path(shards_dir) / SHARD_STATS_FILE
    _validate(stats, f"{path} (being written)")
    return atomic_write_text(path, json.dumps(stats, indent=2))


def read_shard_stats(shards_dir: str | os.PathLike) -> dict[str, Any]:
    """The stats of a shards folder: ``seq_len``, ``sample_len``, ``dtype``, ``eos_id``,
    ``vocab_size``, ``heldout_fraction``, ``seed`` and per source ``docs``, ``heldout_docs``,
    ``tokens``, ``samples``, ``tokens_dropped``.

    Raises:
        FileNotFoundError: If the folder has no ``shard_stats.json``.
        FormatError: For a file that is not JSON or a missing or mistyped field (named).
    """
    path = Path(shards_dir) / SHARD_STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {shards_dir} an output of tokenize_to_shards?"
        )
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: invalid JSON: {err}") from err
    _validate(stats, str(path))
    return stats


def source_samples(stats: dict[str, Any]) -> dict[str, int]:
    """Samples per source, in the file's order (what the loader and the mixture draw from)."""
    return {name: s["samples"] for name, s in stats["sources"].items()}


def _validate(stats: Any, where: str) -> None:
    if not isinstance(stats, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(stats).__name__}")
    for key, kind in _TOP.items():
        if not isinstance(stats.get(key), kind) or isinstance(stats.get(key), bool):
            raise FormatError(f"{where}: field {key!r} missing or not {_name(kind)}")
    for name, source in stats["sources"].items():
        for key in _PER_SOURCE:
            value = source.get(key) if isinstance(source, dict) else None
            if not isinstance(value, int) or isinstance(value, bool):
                raise FormatError(f"{where}: field 'sources.{name}.{key}' missing or not an int")


def _name(kind) -> str:
    return "a number" if isinstance(kind, tuple) else f"a {kind.__name__}"
