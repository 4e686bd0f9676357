"""The torch-free token shard writer writes the files mosaicml-streaming's MDSWriter writes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
from llm_data.training_data.mds_writer import TokenShardWriter


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_files_equal_mdswriter_byte_for_byte(tmp_path, dtype):
    from streaming import MDSWriter

    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 60_000, (n, 17)).astype(dtype) for n in (5, 0, 40, 1, 23)]
    limit = 1000  # 10-20 samples per shard: several shards, cut inside a batch
    column = {"tokens": f"ndarray:{dtype}:17"}
    with MDSWriter(
        out=str(tmp_path / "ref"), columns=column, hashes=["sha1", "xxh64"], size_limit=limit
    ) as ref:
        for rows in batches:
            for row in rows:
                ref.write({"tokens": row})
    with TokenShardWriter(tmp_path / "ours", 17, dtype, size_limit=limit) as ours:
        for rows in batches:
            ours.write(rows)
    names = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert len(names) > 3 and names == sorted(p.name for p in (tmp_path / "ours").iterdir())
    for name in names:
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_rows_of_another_shape_or_dtype_are_refused(tmp_path):
    with TokenShardWriter(tmp_path, 8, "uint16") as writer:
        with pytest.raises(ValueError, match="ndarray:uint16:8"):
            writer.write(np.zeros((2, 9), dtype=np.uint16))
        with pytest.raises(ValueError, match="dtype int64"):
            writer.write(np.zeros((2, 8), dtype=np.int64))
