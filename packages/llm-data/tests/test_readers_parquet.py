"""Parquet sources and fsspec (memory://) paths, through `run_curation`."""

from __future__ import annotations

import json

import pytest

from llm_data import CurationConfig, InputError, SourceConfig, run_curation
from llm_data.readers import resolve_source_files

ROWS = [
    {"doc_id": "a", "body": "First document, written to a Parquet file.", "url": "https://a"},
    {"doc_id": "b", "body": None, "url": "https://b"},  # skipped and counted
    {"doc_id": "c", "body": "Third document, mail me at someone@example.org.", "url": "https://c"},
    {"doc_id": "d", "body": "", "url": "https://d"},  # skipped and counted
]


def _write_parquet(path, rows=ROWS):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _config(path: str, out, **source) -> CurationConfig:
    fields = {"format": "parquet", "quality_filters": False, **source}
    return CurationConfig(
        sources=[SourceConfig(name="docs", path=path, **fields)], output_dir=str(out)
    )


def test_parquet_source_with_named_columns(tmp_path, helpers):
    (tmp_path / "in").mkdir()
    _write_parquet(tmp_path / "in" / "part-0.parquet")
    config = _config(str(tmp_path / "in"), tmp_path / "out", text_column="body", id_column="doc_id")
    stats = run_curation(config)
    docs = helpers.read_curated(tmp_path / "out" / "docs")
    assert [d["id"] for d in docs] == ["a", "c"]
    assert docs[0]["metadata"]["url"] == "https://a"
    assert "someone@example.org" not in docs[1]["text"]  # PII masking runs on every source
    assert docs[1]["metadata"]["pii"] == {"email": 1}
    reader = stats["docs"]["stages"][0]
    assert reader["stage"] == "StrictParquetReader"
    assert reader["removed_by"] == {"null_text": 1, "empty_text": 1}
    assert [(s["line"], s["reason"]) for s in reader["skipped"]] == [
        (2, "null_text"), (4, "empty_text"),
    ]  # fmt: skip


def test_parquet_without_the_text_column_names_file_and_column(tmp_path):
    _write_parquet(tmp_path / "part-0.parquet")
    with pytest.raises(InputError, match=r"part-0\.parquet.*no text column 'text'.*'body'"):
        run_curation(_config(str(tmp_path / "part-0.parquet"), tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_corrupt_parquet_names_the_file(tmp_path):
    _write_parquet(tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"corrupt or unreadable Parquet file .*cut\.parquet"):
        run_curation(_config(str(tmp_path / "cut.parquet"), tmp_path / "out", text_column="body"))


def test_fsspec_memory_paths(tmp_path, helpers):
    import fsspec

    fs = fsspec.filesystem("memory")
    lines = [json.dumps({"id": f"m{i}", "text": f"document number {i}"}) for i in range(3)]
    fs.pipe("/corpus/x/part-0.jsonl", ("\n".join(lines) + "\n").encode())
    fs.pipe("/corpus/x/notes.txt", b"not a jsonl file")
    try:
        source = SourceConfig(name="mem", path="memory://corpus/x", format="jsonl")
        assert resolve_source_files(source) == ("memory://corpus/x", ["part-0.jsonl"])
        glob = SourceConfig(name="mem", path="memory://corpus/*/part-*.jsonl", format="jsonl")
        assert resolve_source_files(glob) == ("memory://corpus", ["x/part-0.jsonl"])
        missing = SourceConfig(name="mem", path="memory://corpus/nothing", format="jsonl")
        with pytest.raises(InputError, match="memory://corpus/nothing.*does not exist"):
            resolve_source_files(missing)
        config = CurationConfig(
            sources=[
                SourceConfig(
                    name="mem", path="memory://corpus/x", format="jsonl", quality_filters=False
                )  # fmt: skip
            ],
            output_dir=str(tmp_path / "out"),
        )
        run_curation(config)
        docs = helpers.read_curated(tmp_path / "out" / "mem")
        assert sorted(d["id"] for d in docs) == ["m0", "m1", "m2"]
    finally:
        fs.rm("/corpus", recursive=True)
