import gzip
import json

import pytest

from llm_formats.documents import curated_sources, read_documents, write_documents
from llm_formats.jsonl import FormatError


def test_write_then_read_round_trip(tmp_path):
    records = [{"id": "a", "text": "héllo", "metadata": {"language": "fr"}},
               {"id": 7, "text": "x", "metadata": {}}]  # fmt: skip
    path = write_documents(tmp_path / "web" / "00000.jsonl.gz", records)
    docs = list(read_documents(path))
    assert [(d.id, d.text, d.language) for d in docs] == [("a", "héllo", "fr"), ("7", "x", None)]
    assert docs[1].where == f"{path}:2"
    first = path.read_bytes()
    write_documents(path, records)
    assert path.read_bytes() == first  # no time stamp in the gzip header


def test_missing_id_and_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b", "metadata": {"language": 3}}\n')
    assert [(d.id, d.language) for d in read_documents(path)] == [("d.jsonl/1", None),
                                                                  ("d.jsonl/3", None)]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [("{no", "invalid JSON"), ('{"id": 1}', "field 'text'"), ("[1]", "expected a JSON object")],
)
def test_bad_record_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n' + line + "\n")
    with pytest.raises(FormatError, match=message) as err:
        list(read_documents(path))
    assert f"{path}:2:" in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n' * 1000)[:-20])
    with pytest.raises(FormatError, match="cannot read"):
        list(read_documents(path))


def test_writer_refuses_a_record_without_text(tmp_path):
    with pytest.raises(FormatError, match="field 'text'"):
        write_documents(tmp_path / "d.jsonl", [{"id": "a"}])
    assert not (tmp_path / "d.jsonl").exists()


def test_curated_sources_skip_excluded_logs_and_empty(tmp_path):
    for rel in ("web/00000.jsonl.gz", "web/00001.jsonl", "books/00000.jsonl.gz",
                "excluded/minhash/00000.jsonl.gz", "logs/x.jsonl"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps({"text": "a"}) + "\n")
    (tmp_path / "code").mkdir()
    sources = curated_sources(tmp_path)
    assert list(sources) == ["books", "web"]
    assert [p.name for p in sources["web"]] == ["00000.jsonl.gz", "00001.jsonl"]
