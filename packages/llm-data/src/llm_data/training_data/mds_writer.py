"""Token samples to MDS shards, byte for byte as mosaicml-streaming's `MDSWriter` writes them.

Why not `MDSWriter` itself: importing `streaming` imports torch and transformers (13 s wall,
9 s user CPU on the shared 2-core development machine; 4.6 s and 4.4 s of it by `python -X
importtime`), which every shard task in a spawned worker or a Slurm array paid before
tokenizing anything; and it encodes sample by sample in Python. Here a whole `(n, sample_len)`
array goes to disk in one write per shard, with numpy and hashlib only. The column is the one
the loader reads (`tokens`, `ndarray:<dtype>:<sample_len>`, a fixed-size column), hashed with
sha1 and xxh64, shards of at most `1 << 26` bytes; `tests/test_mds_writer.py` checks the
files equal `MDSWriter`'s.

An MDS shard (format version 2, no compression) is: uint32 sample count, uint32 offsets of
the samples (count + 1, from the start of the file), the writer's config as JSON, then the
samples; a fixed-size column adds nothing per sample but its bytes. `index.json` lists the
shards with their config, sample count, size and hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import xxhash

TOKENS_COLUMN = "tokens"
SIZE_LIMIT = 1 << 26  # MDSWriter's default shard size
_HASHES = ("sha1", "xxh64")  # sorted, as MDSWriter requires


class TokenShardWriter:
    """Write rows of `sample_len` tokens to `out/shard.<i>.mds` and `out/index.json`.

    Use as a context manager: `index.json` is written on a clean exit only.
    """

    def __init__(
        self, out: str | Path, sample_len: int, dtype: np.dtype | str, size_limit: int = SIZE_LIMIT
    ):
        self.out, self.dtype, self.sample_len = Path(out), np.dtype(dtype), sample_len
        self.sample_bytes = sample_len * self.dtype.itemsize
        encoding = f"ndarray:{self.dtype.name}:{sample_len}"
        self.config = {
            "version": 2,
            "format": "mds",
            "compression": None,
            "hashes": list(_HASHES),
            "size_limit": size_limit,
            "column_names": [TOKENS_COLUMN],
            "column_encodings": [encoding],
            "column_sizes": [self.sample_bytes],
        }
        self.config_data = json.dumps(self.config, sort_keys=True).encode("utf-8")
        # MDSWriter starts a new shard when the next sample (its bytes + a 4-byte offset)
        # would pass the limit, counting 8 header bytes and the config per shard.
        room = size_limit - 8 - len(self.config_data)
        self.per_shard = max(1, room // (self.sample_bytes + 4))
        self.shards: list[dict] = []
        self._pending: list[np.ndarray] = []  # rows of the shard being filled
        self._pending_rows = 0

    def __enter__(self) -> TokenShardWriter:
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()

    def write(self, rows: np.ndarray) -> None:
        """Append `rows` (`(n, sample_len)`, this writer's dtype) to the shards."""
        if rows.dtype != self.dtype or rows.ndim != 2 or rows.shape[1] != self.sample_len:
            raise ValueError(
                f"rows of shape {rows.shape} and dtype {rows.dtype} do not match the column "
                f"{self.config['column_encodings'][0]!r}"
            )
        while len(rows):
            take = min(len(rows), self.per_shard - self._pending_rows)
            self._pending.append(rows[:take])
            self._pending_rows += take
            rows = rows[take:]
            if self._pending_rows == self.per_shard:
                self._flush()

    def finish(self) -> None:
        """Write the last shard and `index.json`."""
        if self._pending_rows:
            self._flush()
        index = {"version": 2, "shards": self.shards}
        with open(self.out / "index.json", "w") as f:
            json.dump(index, f, sort_keys=True)

    def _flush(self) -> None:
        n = self._pending_rows
        offsets = np.arange(n + 1, dtype=np.uint32) * np.uint32(self.sample_bytes)
        offsets += 4 + 4 * (n + 1) + len(self.config_data)
        parts = [np.uint32(n).tobytes(), offsets.tobytes(), self.config_data]
        parts += [np.ascontiguousarray(rows).data for rows in self._pending]
        digests = [hashlib.sha1(), xxhash.xxh64()]
        basename = f"shard.{len(self.shards):05}.mds"
        size = 0
        with open(self.out / basename, "wb") as f:
            for part in parts:
                f.write(part)
                size += len(part) if isinstance(part, bytes) else part.nbytes
                for digest in digests:
                    digest.update(part)
        hashes = {algo: d.hexdigest() for algo, d in zip(_HASHES, digests, strict=True)}
        raw = {"basename": basename, "bytes": size, "hashes": hashes}
        self.shards.append({"samples": n, "raw_data": raw, "zip_data": None, **self.config})
        self._pending, self._pending_rows = [], 0
