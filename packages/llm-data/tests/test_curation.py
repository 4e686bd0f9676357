from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_data import CurationConfig, InputError, SourceConfig, run_curation


def _stage(stats: dict, source: str, name: str) -> dict:
    return next(s for s in stats[source]["stages"] if s["stage"] == name)


def test_counts_per_stage(curated, helpers):
    stats = curated["stats"]
    n_pages = 3 * helpers.PAGES_PER_LANGUAGE + 2  # + planted duplicate + planted junk page
    assert _stage(stats, "web", "StrictWarcReader")["in"] == n_pages
    lang = _stage(stats, "web", "LanguageIdFilter")
    assert sum(lang["languages"].values()) == lang["in"]
    gopher = _stage(stats, "web", "MultilingualGopherFilter")
    assert gopher["removed_by"]["gopher_too_many_hashes"] == 1  # the planted junk page
    assert sum(gopher["removed_by"].values()) == gopher["removed"]
    assert _stage(stats, "web", "ExactDedup")["removed"] == 1  # the planted copy
    # The re-spaced, upper-cased copy of the first book is its exact duplicate.
    assert _stage(stats, "books", "ExactDedup") == {
        "stage": "ExactDedup",
        "in": 4,
        "kept": 3,
        "removed": 1,
        "removed_by": {"exact_duplicate": 1},
        "duplicate_of_source": {"books": 1},
    }
    for source in ("web", "books"):
        rows = stats[source]["stages"]
        assert [r["stage"] for r in rows[-3:]] == ["ExactDedup", "UrlDedup", "MinhashDedup"]
        for before, row in zip(rows, rows[1:], strict=False):
            assert row["in"] == before["kept"]
        assert stats[source]["documents_out"] == rows[-1]["kept"]
    saved = json.loads((curated["out"] / "curation_stats.json").read_text())
    assert saved == stats


def test_output_documents(curated, small_inputs, helpers):
    web = helpers.read_curated(curated["out"] / "web")
    assert len(web) == curated["stats"]["web"]["documents_out"]
    urls = [d["metadata"]["url"] for d in web]
    assert helpers.JUNK_URI not in urls
    assert len(set(d["text"] for d in web)) == len(web)
    for doc in web:
        assert doc["metadata"]["source"] == "web"
        url = doc["metadata"]["url"].split("?")[0]
        expected = next(lang for lang, us in small_inputs["uris"].items() if url in us)
        # Partly untranslated de/fr pages are mostly English text, so "en" is right for them.
        assert doc["metadata"]["language"] in {expected, "en"}
        assert 0.5 <= doc["metadata"]["language_score"] <= 1.0
    books = helpers.read_curated(curated["out"] / "books")
    # Of the book and its padded copy the longer text is kept (dedup's rule): the copy.
    assert sorted(d["id"] for d in books) == sorted(small_inputs["book_ids"][1:] + ["dup"])
    leftovers = [p.name for p in curated["out"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_existing_output_needs_overwrite(curated):
    with pytest.raises(FileExistsError, match="overwrite"):
        run_curation(curated["config"])


def test_missing_path_names_path_and_source(tmp_path):
    missing = tmp_path / "nope"
    config = CurationConfig(
        sources=[SourceConfig(name="crawl", path=str(missing), format="warc")],
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(InputError, match=r"'crawl'.*nope"):
        run_curation(config)
    assert not (tmp_path / "out").exists()


def test_truncated_warc_is_one_clear_error(tmp_path, helpers):
    src = helpers.SAMPLE / "web" / "handbook-en-US.warc.gz"
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(src.read_bytes()[:60_000])
    config = CurationConfig(
        sources=[SourceConfig(name="web", path=str(broken), format="warc", quality_filters=False)],
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(InputError, match=r"'web'.*truncated WARC file .*broken\.warc\.gz"):
        run_curation(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.warc.gz"]


def test_jsonl_record_without_text_names_file_and_line(tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "body": "no text"}\n')
    config = CurationConfig(
        sources=[SourceConfig(name="docs", path=str(data), format="jsonl", quality_filters=False)],
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(InputError, match=r"docs\.jsonl, line 2: field 'text' is missing"):
        run_curation(config)
    assert not (tmp_path / "out").exists()


def test_import_does_not_load_torch():
    code = "import sys, llm_data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_truncated_jsonl_gz_names_the_file(tmp_path, helpers):
    broken = tmp_path / "code.jsonl.gz"
    broken.write_bytes((helpers.SAMPLE / "code" / "python-stdlib.jsonl.gz").read_bytes()[:30_000])
    config = CurationConfig(
        sources=[
            SourceConfig(name="code", path=str(broken), format="jsonl", quality_filters=False)
        ],
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(InputError, match=r"'code'.*truncated JSONL file .*code\.jsonl\.gz"):
        run_curation(config)
    assert not (tmp_path / "out").exists()


def _curate_jsonl(tmp_path, path):
    config = CurationConfig(
        sources=[SourceConfig(name="docs", path=str(path), format="jsonl", quality_filters=False)],
        output_dir=str(tmp_path / "out"),
    )
    return run_curation(config)


def _lines(n: int) -> list[bytes]:
    return [json.dumps({"id": str(i), "text": f"document number {i}"}).encode() for i in range(n)]


@pytest.mark.parametrize(("n", "bad"), [(1000, 501), (11, 6)])
def test_invalid_utf8_line_is_counted_and_the_rest_kept(tmp_path, helpers, n, bad):
    lines = _lines(n)
    lines[bad - 1] = lines[bad - 1].replace(b"number", b"num\xffber")
    data = tmp_path / "docs.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    stats = _curate_jsonl(tmp_path, data)
    assert len(helpers.read_curated(tmp_path / "out" / "docs")) == n - 1
    reader = _stage(stats, "docs", "StrictJsonlReader")
    assert (reader["in"], reader["kept"], reader["removed"]) == (n, n - 1, 1)
    assert reader["removed_by"] == {"invalid_utf8": 1}
    assert reader["skipped"] == [{"file": str(data), "line": bad, "reason": "invalid_utf8"}]
    saved = json.loads((tmp_path / "out" / "curation_stats.json").read_text())
    assert saved["docs"]["stages"][0] == reader


def test_bad_lines_are_counted_with_reason_and_line(tmp_path, helpers):
    lines = _lines(6)
    lines[1] = b'{"id": "1", "text": '  # invalid JSON
    lines[3] = b'{"id": "3", "text": ""}'
    data = tmp_path / "docs.jsonl"
    data.write_bytes(b"\n".join(lines)[:-5])  # the last line is cut, no newline
    stats = _curate_jsonl(tmp_path, data)
    assert len(helpers.read_curated(tmp_path / "out" / "docs")) == 3
    reader = _stage(stats, "docs", "StrictJsonlReader")
    assert (reader["in"], reader["kept"], reader["removed"]) == (6, 3, 3)
    assert reader["removed_by"] == {"invalid_json": 1, "empty_text": 1, "cut_last_line": 1}
    assert [(s["line"], s["reason"]) for s in reader["skipped"]] == [
        (2, "invalid_json"),
        (4, "empty_text"),
        (6, "cut_last_line"),
    ]


def test_corrupt_gzip_names_the_file_and_line(tmp_path):
    import gzip

    raw = b"\n".join(_lines(2000)) + b"\n"
    packed = bytearray(gzip.compress(raw, compresslevel=0))  # stored blocks: a CRC error
    packed[len(packed) // 2 : len(packed) // 2 + 16] = b"x" * 16
    broken = tmp_path / "docs.jsonl.gz"
    broken.write_bytes(bytes(packed))
    with pytest.raises(InputError, match=r"'docs'.*corrupt .*docs\.jsonl\.gz.*after line \d+"):
        _curate_jsonl(tmp_path, broken)
    assert not (tmp_path / "out").exists()
