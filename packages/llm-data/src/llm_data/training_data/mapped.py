"""A StreamingDataset that reads local, uncompressed MDS shards through memory maps.

streaming's MDS reader opens the shard file for every sample (open, two seeks, two reads): in
the loader's profile that was the largest single cost, ~40% of the time per batch. Here each
shard file is mapped once and a sample's bytes are a numpy view of the map, decoded by
streaming's `decode_sample`, or, for shards of fixed-shape `ndarray` columns (ours), cut into
`np.frombuffer` views with the column layout parsed once per shard (streaming parses the
encoding string of every column of every sample). Sample order, partition, shuffling and mixing
stay streaming's; only the read changes. Compressed shards, or shards not on local disk, take
streaming's path.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from streaming import StreamingDataset

__all__ = ["MappedStreamingDataset"]

# Each map holds a file descriptor (Python's mmap keeps a duplicate): keep the most recent ones.
MAX_OPEN_MAPS = 256


class MappedStreamingDataset(StreamingDataset):
    """`StreamingDataset` whose `get_item` reads samples from memory-mapped shard files."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # shard id -> (file bytes, sample offsets), or None where streaming reads the shard
        self._maps: OrderedDict[int, tuple | None] = OrderedDict()

    def get_item(self, sample_id: int, retry: int = 7) -> Any:
        shard_id, index = self.spanner[sample_id]
        mapped = self._map(shard_id)
        if mapped is None:
            return super().get_item(sample_id, retry)
        data, offsets, decode = mapped
        return decode(data[offsets[index] : offsets[index + 1]])

    def _map(self, shard_id: int):
        """(file bytes, sample offsets, decoder) of a shard, or None where streaming reads it."""
        if shard_id in self._maps:
            self._maps.move_to_end(shard_id)
            return self._maps[shard_id]
        shard = self.shards[shard_id]
        path = os.path.join(shard.dirname, shard.split, shard.raw_data.basename)
        mapped = None
        if not shard.compression and os.path.isfile(path):
            # A plain ndarray view: slicing an np.memmap runs Python code per slice.
            data = np.memmap(path, np.uint8, mode="r").view(np.ndarray)
            # MDS shard: sample count (uint32), count + 1 offsets (uint32), the samples.
            count = int(data[:4].view(np.uint32)[0])
            offsets = data[4 : 4 + 4 * (count + 1)].view(np.uint32).astype(np.int64)
            mapped = data, offsets, _fixed_arrays_decoder(shard) or shard.decode_sample
        elif not shard.compression:  # remote, not downloaded yet: streaming's path fetches it,
            return None  # and the next sample of it is read through a map
        self._maps[shard_id] = mapped
        if len(self._maps) > MAX_OPEN_MAPS:
            self._maps.popitem(last=False)
        return mapped

    def close_maps(self) -> None:
        self._maps.clear()


def _fixed_arrays_decoder(shard) -> Callable[[np.ndarray], dict] | None:
    """Decoder of a sample whose columns are all fixed-shape `ndarray:<dtype>:<shape>`."""
    columns, start = [], 0
    for name, encoding, size in zip(
        shard.column_names, shard.column_encodings, shard.column_sizes, strict=True
    ):
        parts = encoding.split(":")
        if not size or len(parts) != 3 or parts[0] != "ndarray":
            return None
        shape = tuple(int(d) for d in parts[2].split(","))
        columns.append((name, start, start + size, np.dtype(parts[1]), shape))
        start += size

    def decode(data: np.ndarray) -> dict:
        return {n: data[a:b].view(dtype).reshape(shape) for n, a, b, dtype, shape in columns}

    return decode
