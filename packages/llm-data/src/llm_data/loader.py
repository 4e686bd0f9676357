"""An endless, exactly resumable batch loader over MDS token shards (extra [shards]).

One mosaicml-streaming `Stream` per source, mixed by `proportions`. Rank and world size come
from the environment that torchrun sets (what `torch.distributed` uses), read by streaming.

Shards are verified against their index.json (presence, size, xxh64 or sha1 hash) before the
dataset is built: streaming only checks hashes of shards it downloads, so a zeroed local shard
trained silently and a truncated or deleted one failed later without naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llm_data.readers import InputError
from llm_data.shards import SHARD_STATS_FILE

__all__ = ["TokenLoader", "build_loader"]


def build_loader(
    shards_dir: str | Path,
    *,
    seq_len: int,
    batch_size: int,
    proportions: dict[str, float] | None = None,
    seed: int = 0,
    shuffle: bool = True,
) -> TokenLoader:
    """Build an endless loader of `dict(input_ids, labels)` LongTensor[B, T] batches.

    Args:
        shards_dir: output of `tokenize_to_shards` (one MDS folder per source).
        seq_len: T; at most the `seq_len` the shards were written with (longer samples are cut).
        batch_size: B, per rank.
        proportions: mixture weights per source (normalized); None mixes sources by size.
        seed: shuffle seed (same seed, same batches).
        shuffle: shuffle samples within and across shards, differently each epoch.
    """
    return TokenLoader(
        shards_dir,
        seq_len=seq_len,
        batch_size=batch_size,
        proportions=proportions,
        seed=seed,
        shuffle=shuffle,
    )


class TokenLoader:
    """Iterates forever over batches; `state_dict()` after k batches resumes at batch k + 1.

    Each epoch holds only full batches (the remainder of an epoch is skipped), so the state is
    just (epoch, sample offset in the epoch). Call `close()` (or drop the object) before building
    another loader on the same shards in the same process: streaming keeps one live dataset
    per local folder.
    """

    def __init__(self, shards_dir, *, seq_len, batch_size, proportions, seed, shuffle):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected an integer >= 1")
        self.shards_dir = Path(shards_dir).expanduser().resolve()
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        meta = _read_stats(self.shards_dir)
        if not 1 <= seq_len <= meta["seq_len"]:
            raise ValueError(
                f"seq_len={seq_len!r} is invalid: shards in {self.shards_dir} hold samples for "
                f"seq_len <= {meta['seq_len']}"
            )
        self.sources = _choose_sources(self.shards_dir, meta, proportions)
        for folder, _ in self.sources.values():
            verify_shards(folder)
        self.dataset = _build_dataset(self.sources, batch_size, seed, shuffle)
        self.epoch = 0
        self.sample_in_epoch = 0

    def __iter__(self) -> Iterator[dict]:
        import torch

        while True:
            self._seek()
            batches_this_epoch = 0
            rows: list[np.ndarray] = []
            for sample in self.dataset:
                rows.append(sample["tokens"][: self.seq_len + 1].astype(np.int64))
                if len(rows) < self.batch_size:
                    continue
                tokens = torch.from_numpy(np.stack(rows))  # (B, T + 1)
                rows = []
                self.sample_in_epoch += self.batch_size
                batches_this_epoch += 1
                yield {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
            if batches_this_epoch == 0 and self.sample_in_epoch == 0:
                raise ValueError(
                    f"shards in {self.shards_dir} have fewer samples per rank than "
                    f"batch_size={self.batch_size}"
                )
            self.epoch += 1
            self.sample_in_epoch = 0

    def _seek(self) -> None:
        # Always position streaming explicitly, so a fresh and a resumed run take the same path.
        state = self.dataset.state_dict(0, from_beginning=True)
        state |= {"epoch": self.epoch, "sample_in_epoch": self.sample_in_epoch}
        self.dataset.load_state_dict(state)

    def state_dict(self) -> dict:
        """Position after the last yielded batch, plus what must match when resuming."""
        return {
            "epoch": self.epoch,
            "sample_in_epoch": self.sample_in_epoch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "sources": {name: weight for name, (_, weight) in self.sources.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at `state` (from `state_dict()` of a loader built with the same arguments)."""
        mine = self.state_dict()
        for key in ("seed", "batch_size", "sources"):
            if state[key] != mine[key]:
                raise ValueError(f"loader state {key}={state[key]!r} does not match {mine[key]!r}")
        self.epoch, self.sample_in_epoch = int(state["epoch"]), int(state["sample_in_epoch"])

    def close(self) -> None:
        """Release streaming's shared memory so another loader can use the same shards."""
        dataset, self.dataset = self.dataset, None
        if dataset is not None and hasattr(dataset, "_iterator"):
            dataset._iterator.exit()
        del dataset


def _read_stats(shards_dir: Path) -> dict:
    path = shards_dir / SHARD_STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {shards_dir} an output of tokenize_to_shards?"
        )
    return json.loads(path.read_text())


def _choose_sources(shards_dir: Path, meta: dict, proportions) -> dict[str, tuple[Path, float]]:
    """Map source name -> (MDS folder, normalized weight or 0.0 for 'by size')."""
    available = [s for s, st in meta["sources"].items() if st["samples"] > 0]
    if proportions is None:
        return {s: (shards_dir / s, 0.0) for s in available}
    unknown = sorted(set(proportions) - set(available))
    if unknown:
        raise ValueError(f"proportions name unknown sources {unknown}; available: {available}")
    if any(w < 0 for w in proportions.values()) or sum(proportions.values()) <= 0:
        raise ValueError(f"proportions={proportions!r} is invalid: expected weights >= 0, sum > 0")
    total = sum(proportions.values())
    return {s: (shards_dir / s, w / total) for s, w in sorted(proportions.items()) if w > 0}


def verify_shards(folder: Path) -> None:
    """Check every shard of an MDS folder against its index.json: present, size, hash.

    Raises:
        InputError: naming the index or the shard file and what is wrong with it.
    """
    from streaming.base.hashing import get_hash

    index_path = folder / "index.json"
    if not index_path.is_file():
        raise InputError(f"{index_path} is missing: {folder} is not an MDS folder")
    for shard in json.loads(index_path.read_text())["shards"]:
        info = shard.get("zip_data") or shard["raw_data"]
        path = folder / info["basename"]
        if not path.is_file():
            raise InputError(f"{path}: shard listed in {index_path} is missing")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise InputError(
                f"{path}: {size} bytes, index.json says {info['bytes']} (truncated or replaced)"
            )
        algo = next((a for a in ("xxh64", "sha1") if a in info.get("hashes", {})), None)
        if algo is not None and get_hash(algo, path.read_bytes()) != info["hashes"][algo]:
            raise InputError(f"{path}: {algo} hash does not match index.json (corrupt shard)")


def _build_dataset(sources, batch_size: int, seed: int, shuffle: bool):
    from streaming import Stream, StreamingDataset

    # No clean_stale_shared_memory(): it unlinks the shared memory of every streaming job on the
    # machine, live ones included (under torchrun, what another local rank just created).
    # Streams here are local-only, for which streaming never refuses a folder because of stale
    # memory: it takes the next free prefix, so a crashed run costs a few small /dev/shm files.
    by_size = all(weight == 0.0 for _, weight in sources.values())
    streams = [
        Stream(local=str(path), proportion=None if by_size else weight)
        for path, weight in sources.values()
    ]
    return StreamingDataset(
        streams=streams,
        batch_size=batch_size,
        shuffle=shuffle,
        shuffle_seed=seed,
        num_canonical_nodes=1,
        validate_hash=None,  # verify_shards did it, naming the file
    )
