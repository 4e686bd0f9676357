"""What a source folder's listing reads: every JSON Lines file, whatever its case or name, and a
warning naming the files it does not read (they used to be skipped without a word)."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

from llm_data.config import SourceConfig
from llm_data.readers import make_reader, resolve_source_files


def _lines(n: int, tag: str) -> bytes:
    return b"".join(
        json.dumps({"id": f"{tag}{i}", "text": f"{tag} {i}"}).encode() + b"\n" for i in range(n)
    )


def test_a_source_folder_reads_every_jsonl_file_and_names_the_others(tmp_path: Path, caplog):
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(_lines(2, "a"))
    (folder / "B.JSONL").write_bytes(_lines(3, "b"))
    (folder / "c.ndjson").write_bytes(_lines(4, "c"))
    (folder / "sub" / "d.jsonl.bz2").write_bytes(bz2.compress(_lines(5, "d")))
    (folder / "e.JSONL.GZ").write_bytes(gzip.compress(_lines(6, "e")))
    (folder / "f.json").write_bytes(_lines(7, "f"))
    (folder / "notes.txt").write_text("not data")
    source = SourceConfig(name="mix", path=str(folder), format="jsonl")
    with caplog.at_level("WARNING"):
        base, files = resolve_source_files(source)
    assert files == ["B.JSONL", "a.jsonl", "c.ndjson", "e.JSONL.GZ", "sub/d.jsonl.bz2"]
    assert "2 file(s)" in caplog.text and "f.json, notes.txt" in caplog.text
    reader = make_reader(source, base, tmp_path / "paths.txt", {})
    counts = {f: sum(1 for _ in reader.read_file(f)) for f in files}
    assert counts == {
        "B.JSONL": 3, "a.jsonl": 2, "c.ndjson": 4, "e.JSONL.GZ": 6, "sub/d.jsonl.bz2": 5
    }  # fmt: skip
