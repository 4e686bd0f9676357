"""Checks of MDS shard folders against their index.json, at a cost that does not grow per rank.

streaming checks hashes only of shards it downloads, so a zeroed local shard trained silently
and a truncated or deleted one failed later without naming the file. Hashing every shard of
every source on every rank before the first batch read the whole data set world-size times,
though, so the checks are split: every rank does the cheap ones up front (``check_shards``:
the index reads, each listed shard exists with its size, ``stat`` calls), and each shard's hash
is checked exactly once per run, by rank ``i % world`` for the ``i``-th shard of all sources
(``ShardHashCheck``), in a background thread while training runs. A mismatch is kept and raised
on the training thread by ``check()`` (the loader calls it before every batch and in
``state_dict``, so no checkpoint records a position past a corrupt shard's discovery).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from llm_data.readers import InputError

__all__ = ["ShardHashCheck", "ShardRecord", "check_shards"]


@dataclass(frozen=True)
class ShardRecord:
    """One shard file and the hash its index records (``algo`` None: the index has none)."""

    path: Path
    index: Path
    algo: str | None
    digest: str | None


def _index_shards(index_path: Path) -> list[dict]:
    """The ``shards`` list of an MDS ``index.json``; an unreadable one is an error naming it."""
    try:
        shards = json.loads(index_path.read_text())["shards"]
    except json.JSONDecodeError as e:
        raise InputError(f"{index_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    except (KeyError, TypeError):
        shards = None
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        raise InputError(f"{index_path}: field 'shards' must be a list of objects")
    return shards


def check_shards(folder: Path) -> list[ShardRecord]:
    """The cheap checks of an MDS folder: its index.json reads and every shard it lists is
    present with the listed size. Returns the shards with their recorded hash, for
    ``ShardHashCheck``; reads no shard.

    Raises:
        InputError: naming the index or the shard file and what is wrong with it.
    """
    index_path = folder / "index.json"
    if not index_path.is_file():
        raise InputError(f"{index_path} is missing: {folder} is not an MDS folder")
    records = []
    for shard in _index_shards(index_path):
        info = shard.get("zip_data") or shard["raw_data"]
        path = folder / info["basename"]
        if not path.is_file():
            raise InputError(f"{path}: shard listed in {index_path} is missing")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise InputError(
                f"{path}: {size} bytes, index.json says {info['bytes']} (truncated or replaced)"
            )
        hashes = info.get("hashes") or {}
        algo = next((a for a in ("xxh64", "sha1") if a in hashes), None)
        records.append(ShardRecord(path, index_path, algo, hashes.get(algo)))
    return records


def shard_hash(algo: str, path: Path) -> str:
    """The ``algo`` digest of a shard file, as streaming computes the index's."""
    from streaming.base.hashing import get_hash

    return get_hash(algo, path.read_bytes())  # one shard: bounded by the writer's size limit


class ShardHashCheck:
    """Hash this rank's share of ``records`` (``i % world == rank``) in a daemon thread.

    Every shard is hashed by exactly one rank, so a rank reads ``1 / world`` of the data once.
    """

    def __init__(self, records: list[ShardRecord], rank: int, world: int) -> None:
        self.share = [r for i, r in enumerate(records) if i % world == rank and r.algo]
        self._error: InputError | None = None
        self._thread = threading.Thread(target=self._run, name="shard-hash-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for record in self.share:
            try:
                digest = shard_hash(record.algo, record.path)
            except OSError as err:
                self._error = InputError(f"{record.path}: cannot read it to hash it: {err}")
                return
            if digest != record.digest:
                self._error = InputError(
                    f"{record.path}: {record.algo} hash does not match {record.index} "
                    "(corrupt shard)"
                )
                return

    def check(self) -> None:
        """Raise the mismatch found so far, if any (cheap: no waiting)."""
        if self._error is not None:
            raise self._error

    def wait(self, timeout: float | None = None) -> None:
        """Block until this rank's share is hashed, then ``check()``."""
        self._thread.join(timeout)
        self.check()
