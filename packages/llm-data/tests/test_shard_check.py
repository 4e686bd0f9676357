"""Shard checks that scale: stat calls up front on every rank, each shard hashed once per run."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
pytest.importorskip("torch", reason="needs the [shards] extra")

from llm_data import InputError, build_loader
from llm_data.training_data import shard_check


def _shard_files(folder):
    return sorted(p for p in folder.rglob("*.mds"))


def _loaders_of_two_ranks(shards_dir, monkeypatch):
    """The loaders of rank 0 and rank 1 of a world of 2, built in this process (the rank
    and world size come from torchrun's variables, which streaming reads)."""
    loaders = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        loaders.append(build_loader(shards_dir, seq_len=32, batch_size=2, seed=7))
    return loaders


def test_each_shard_is_hashed_once_in_total_not_once_per_rank(shards, monkeypatch):
    hashed = Counter()
    real = shard_check.shard_hash

    def counting(algo, path):
        hashed[path] += 1
        return real(algo, path)

    monkeypatch.setattr(shard_check, "shard_hash", counting)
    loaders = _loaders_of_two_ranks(shards["out"], monkeypatch)
    try:
        shares = [set(r.path for r in loader.shard_hashes.share) for loader in loaders]
        for loader in loaders:
            loader.shard_hashes.wait()
    finally:
        for loader in loaders:
            loader.close()
    files = _shard_files(shards["out"])
    assert len(files) >= 2 and not shares[0] & shares[1]  # disjoint shares
    assert hashed == Counter({p: 1 for p in files})  # every shard once, none twice


def test_a_corrupt_shard_is_found_by_its_rank_and_named(shards, tmp_path, monkeypatch):
    shutil.copytree(shards["out"], tmp_path / "shards")
    index = tmp_path / "shards" / "books" / "index.json"
    shard = index.parent / json.loads(index.read_text())["shards"][0]["raw_data"]["basename"]
    shard.write_bytes(bytes(shard.stat().st_size))  # zeroed: the right size, so stat passes
    loaders = _loaders_of_two_ranks(tmp_path / "shards", monkeypatch)
    try:
        owner = next(
            i for i, lo in enumerate(loaders) if shard in {r.path for r in lo.shard_hashes.share}
        )
        loaders[1 - owner].shard_hashes.wait()  # the other rank's share is fine
        with pytest.raises(InputError, match=rf"{shard}: xxh64 hash does not match {index}"):
            loaders[owner].shard_hashes.wait()
        with pytest.raises(InputError, match="corrupt shard"):  # no checkpoint records past it
            loaders[owner].state_dict()
    finally:
        for loader in loaders:
            loader.close()
