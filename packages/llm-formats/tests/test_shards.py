import json

import pytest

from llm_formats.jsonl import FormatError
from llm_formats.shards import (
    SHARD_STATS_FILE,
    read_shard_stats,
    source_dir,
    source_samples,
    write_shard_stats,
)

SOURCE = {"docs": 3, "heldout_docs": 1, "tokens": 90, "samples": 2, "tokens_dropped": 5}
STATS = {"seq_len": 44, "sample_len": 45, "dtype": "uint16", "eos_id": 0, "vocab_size": 300,
         "heldout_fraction": 0.01, "seed": 0,
         "sources": {"web": SOURCE, "books": SOURCE}}  # fmt: skip


def test_write_then_read(tmp_path):
    write_shard_stats(tmp_path, STATS)
    assert (tmp_path / SHARD_STATS_FILE).read_text() == json.dumps(STATS, indent=2)
    stats = read_shard_stats(tmp_path)
    assert stats == STATS and source_samples(stats) == {"web": 2, "books": 2}
    assert source_dir(tmp_path, "web") == tmp_path / "web"


def test_missing_file_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="output of tokenize_to_shards"):
        read_shard_stats(tmp_path)


@pytest.mark.parametrize(
    ("stats", "message"),
    [({**STATS, "seq_len": "44"}, "field 'seq_len'"),
     ({**STATS, "sources": {"web": {**SOURCE, "samples": None}}}, "field 'sources.web.samples'")],
)  # fmt: skip
def test_bad_field_is_named(tmp_path, stats, message):
    (tmp_path / SHARD_STATS_FILE).write_text(json.dumps(stats))
    with pytest.raises(FormatError, match=message):
        read_shard_stats(tmp_path)
    with pytest.raises(FormatError, match=message):
        write_shard_stats(tmp_path / "new", stats)
