"""The strict WARC reader: a file cut anywhere is an error naming it, never a silent short read."""

from __future__ import annotations

import gzip

import pytest

from llm_data import InputError
from llm_data.readers import StrictWarcReader

# Cut points in the gzip stream: inside the first gzip header, inside the first WARC header,
# inside the first record's payload, and in a later record.
CUTS = [10, 200, 2000, 60_000]


@pytest.fixture(scope="module")
def warc_bytes(helpers) -> bytes:
    return (helpers.SAMPLE / "web" / "handbook-de-DE.warc.gz").read_bytes()


def _read(folder, name: str) -> list:
    return list(StrictWarcReader(str(folder)).read_file(name))


def test_whole_file_reads_every_page(tmp_path, warc_bytes):
    (tmp_path / "whole.warc.gz").write_bytes(warc_bytes)
    docs = _read(tmp_path, "whole.warc.gz")
    assert len(docs) == 127
    assert all(d.metadata["url"].startswith("https://debian-handbook.info/") for d in docs)


@pytest.mark.parametrize("cut", CUTS)
def test_cut_gzip_is_an_error_naming_the_file(tmp_path, warc_bytes, cut):
    (tmp_path / "cut.warc.gz").write_bytes(warc_bytes[:cut])
    with pytest.raises(InputError, match=r"truncated WARC file .*cut\.warc\.gz"):
        _read(tmp_path, "cut.warc.gz")


def test_cut_plain_warc_names_the_short_record(tmp_path, warc_bytes):
    (tmp_path / "cut.warc").write_bytes(gzip.decompress(warc_bytes)[:30_000])
    with pytest.raises(InputError, match=r"cut\.warc: record 0 \(https://.*\) is \d+ bytes short"):
        _read(tmp_path, "cut.warc")


def test_empty_file_has_no_documents(tmp_path):
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    assert _read(tmp_path, "empty.warc.gz") == []
