"""An endless, exactly resumable batch loader over MDS token shards (extra [shards]).

One mosaicml-streaming `Stream` per source, mixed by `proportions`. Rank and world size come
from the environment that torchrun sets (what `torch.distributed` uses), read by streaming.

The position is global: streaming orders an epoch's samples once for all ranks (the order
depends on seed, epoch, sources and `num_canonical_nodes`, not on the world size) and deals
them out rank by rank, so a global step of batch_size x world_size samples is always the next
slice of that order. That is what lets a state resume on another world size with the same
global batch (see the README for the state format and the rules).

Shards are verified against their index.json (presence, size, xxh64 or sha1 hash) before the
dataset is built: streaming only checks hashes of shards it downloads, so a zeroed local shard
trained silently and a truncated or deleted one failed later without naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from llm_data.readers import InputError
from llm_data.shards import SHARD_STATS_FILE

__all__ = ["TokenLoader", "build_loader"]

STATE_VERSION = 2  # 1 (no "version" key) counted samples per rank
# Fixed, so the sample order never depends on the node count: with 1 canonical node streaming
# partitions every world (any number of nodes divides into it) with the same `orig` algorithm.
NUM_CANONICAL_NODES = 1
# Must match for a state to resume; batch size and world size are checked as their product.
_MUST_MATCH = ("seed", "shuffle", "seq_len", "sources", "epoch_size", "num_canonical_nodes")


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
        batch_size: B, per rank; a step of all ranks takes B x world size samples.
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

    Each epoch holds `steps_per_epoch` global steps of `global_batch_size` samples; the last
    `dropped_per_epoch` samples of each epoch's order are skipped, on every rank alike. So the
    state is (epoch, samples all ranks took in the epoch), the same on every rank. Call `close()`
    (or drop the object) before building another loader on the same shards in the same process:
    streaming keeps one live dataset per local folder.
    """

    def __init__(self, shards_dir, *, seq_len, batch_size, proportions, seed, shuffle):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected an integer >= 1")
        self.shards_dir = Path(shards_dir).expanduser().resolve()
        self.seq_len, self.batch_size, self.seed, self.shuffle = seq_len, batch_size, seed, shuffle
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
        self.world_size = _world_size()
        self.global_batch_size = batch_size * self.world_size
        self.epoch_size = int(self.dataset.epoch_size)
        self.steps_per_epoch = self.epoch_size // self.global_batch_size
        self.dropped_per_epoch = self.epoch_size - self.steps_per_epoch * self.global_batch_size
        if self.steps_per_epoch == 0:
            self.close()
            raise ValueError(
                f"shards in {self.shards_dir} have {self.epoch_size} samples per epoch, fewer than "
                f"batch_size={batch_size} x world_size={self.world_size}"
            )
        self.epoch = 0
        self.sample_in_epoch = 0  # taken by all ranks together, a multiple of global_batch_size

    def __iter__(self) -> Iterator[dict]:
        import torch

        while True:
            self._seek()
            samples = iter(self.dataset)
            # Stop at the last full global step: past it streaming pads ranks with repeats.
            steps_left = self.steps_per_epoch - self.sample_in_epoch // self.global_batch_size
            for _ in range(steps_left):
                rows = [s["tokens"][: self.seq_len + 1] for s in islice(samples, self.batch_size)]
                if len(rows) < self.batch_size:
                    raise RuntimeError(
                        f"streaming ended epoch {self.epoch} early at sample {self.sample_in_epoch}"
                        f" of {self.epoch_size} (world size {self.world_size}): a streaming bug"
                    )
                tokens = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T + 1)
                self._advance()
                yield {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}

    def _advance(self) -> None:
        # Count before yielding and roll over at the epoch's end, so the state after an epoch's
        # last batch already says "next epoch, sample 0".
        self.sample_in_epoch += self.global_batch_size
        if self.sample_in_epoch == self.steps_per_epoch * self.global_batch_size:
            self.epoch, self.sample_in_epoch = self.epoch + 1, 0

    def _seek(self) -> None:
        # Always position streaming explicitly, so a fresh and a resumed run take the same path.
        # streaming reads `sample_in_epoch` as the count of all ranks; it ignores a resume state
        # whose epoch is before its own epoch counter (it would start that next epoch at 0), so
        # the counter is set too.
        self.dataset.next_epoch = self.epoch
        self.dataset.load_state_dict(
            {
                "epoch": self.epoch,
                "sample_in_epoch": self.sample_in_epoch,
                "num_canonical_nodes": NUM_CANONICAL_NODES,
                "shuffle_seed": self.seed,
                "initial_physical_nodes": None,  # only streaming's `relaxed` path reads it
            }
        )

    def state_dict(self) -> dict:
        """Global position after the last yielded batch (the same on every rank), plus what
        must match when resuming."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "sample_in_epoch": self.sample_in_epoch,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "seq_len": self.seq_len,
            "sources": {name: weight for name, (_, weight) in self.sources.items()},
            "epoch_size": self.epoch_size,
            "num_canonical_nodes": NUM_CANONICAL_NODES,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at `state`, saved by any rank of a run with the same arguments and the same
        global batch (batch_size x world_size; the world size itself may differ).

        Raises:
            ValueError: naming every setting that differs, when the state cannot resume exactly.
        """
        mine = self.state_dict()
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"loader state version {state.get('version', 1)} is not {STATE_VERSION}: it does "
                "not record the world size, and its sample count was per rank, so it cannot "
                "resume exactly; restart the data position or resume with the llm-data that "
                "saved it"
            )
        differ = [
            f"{key}={state.get(key)!r} (now {mine[key]!r})"
            for key in _MUST_MATCH
            if state.get(key) != mine[key]
        ]
        if state["batch_size"] * state["world_size"] != self.global_batch_size:
            differ.append(
                f"global batch world_size={state['world_size']} x batch_size={state['batch_size']}"
                f" (now world_size={self.world_size} x batch_size={self.batch_size})"
            )
        if differ:
            raise ValueError("loader state cannot resume exactly, saved with " + ", ".join(differ))
        position = _position(state, self.steps_per_epoch, self.global_batch_size)
        self.epoch, self.sample_in_epoch = position

    def close(self) -> None:
        """Release streaming's shared memory so another loader can use the same shards."""
        dataset, self.dataset = self.dataset, None
        if dataset is not None and hasattr(dataset, "_iterator"):
            dataset._iterator.exit()
        del dataset


def _world_size() -> int:
    # The environment streaming partitions by (torchrun's WORLD_SIZE, 1 without it).
    from streaming.base.distributed import get_world_size

    return get_world_size()


def _position(state: dict, steps_per_epoch: int, global_batch: int) -> tuple[int, int]:
    """(epoch, sample_in_epoch) of a state, checked to be the start of a global step."""
    epoch, sample = int(state["epoch"]), int(state["sample_in_epoch"])
    if epoch < 0 or sample < 0 or sample % global_batch or sample >= steps_per_epoch * global_batch:
        raise ValueError(
            f"loader state epoch={epoch}, sample_in_epoch={sample} is not the start of one of the "
            f"{steps_per_epoch} global steps of {global_batch} samples in an epoch"
        )
    return epoch, sample


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
