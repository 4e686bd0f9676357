import pytest

from llm_formats.heldout import HELDOUT_FILE, HeldoutRecord, read_heldout, write_heldout
from llm_formats.jsonl import FormatError


def test_write_then_read(tmp_path):
    records = [HeldoutRecord("1", "a", "web", "fr"), HeldoutRecord("2", "b", "books")]
    with open(tmp_path / HELDOUT_FILE, "w", encoding="utf-8") as f:
        for r in records:
            write_heldout(f, r)
    lines = (tmp_path / HELDOUT_FILE).read_text().splitlines()
    assert lines[1] == '{"id": "2", "text": "b", "source": "books"}'  # no "language": null
    assert list(read_heldout(tmp_path)) == records  # a shards folder: its heldout.jsonl


@pytest.mark.parametrize(
    ("line", "message"),
    [('{"id": "1", "text": "a"}', "field 'source'"),
     ('{"id": "1", "text": "a", "source": "w", "language": 1}', "field 'language'")],
)  # fmt: skip
def test_bad_record_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / HELDOUT_FILE
    path.write_text(line + "\n")
    with pytest.raises(FormatError, match=message) as err:
        list(read_heldout(path))
    assert f"{path}:1:" in str(err.value)
