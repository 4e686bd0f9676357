"""Shards and curated input in object storage, against moto's S3 server (the ``s3`` fixture)."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("s3fs", reason="needs the [s3] extra")


def _upload(local, url) -> None:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    fs.put(str(local), path, recursive=True)


def test_loader_streams_uploaded_shards_with_the_same_batches(shards, s3, tmp_path):
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    import torch

    from llm_data import build_loader

    _upload(shards["out"], f"{s3.url}/run/shards")
    args = dict(seq_len=32, batch_size=4, seed=7)
    local = build_loader(shards["out"], **args)
    remote = build_loader(f"{s3.url}/run/shards", cache_dir=tmp_path / "cache", **args)
    try:
        n = local.steps_per_epoch + 2  # into the second epoch: every shard was fetched
        for a, b in zip(itertools.islice(local, n), itertools.islice(remote, n), strict=True):
            assert torch.equal(a["input_ids"], b["input_ids"])
        state = remote.state_dict()
        assert state == local.state_dict()
    finally:
        local.close()
        remote.close()
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.mds"))
    assert cached  # streaming downloaded them into the cache
    assert cached == sorted(p.name for p in shards["out"].rglob("*.mds"))


def test_loader_needs_a_cache_and_complete_shards(s3, tmp_path):
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    from llm_data import InputError, build_loader

    with pytest.raises(ValueError, match="cache_dir"):
        build_loader(f"{s3.url}/none", seq_len=8, batch_size=1)
    with pytest.raises(InputError, match=f"{s3.url}/none/shard_stats.json is missing"):
        build_loader(f"{s3.url}/none", seq_len=8, batch_size=1, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "pattern", "fmt"), [("web", "web/*.warc.gz", "warc"), ("books", "books", "jsonl")]
)
def test_curation_reads_warc_and_jsonl_from_s3_as_from_disk(
    small_inputs, s3, tmp_path, name, pattern, fmt
):
    """Curation's source listing and reader step (what `run_curation` runs first) give the
    same documents for the uploaded files as for the local ones."""
    from llm_data import SourceConfig
    from llm_data.readers import make_reader, resolve_source_files

    _upload(small_inputs["root"], f"{s3.url}/raw")

    def documents(path: str) -> list[tuple[str, str]]:
        source = SourceConfig(name=name, path=path, format=fmt, quality_filters=False)
        base, files = resolve_source_files(source)
        paths_file = tmp_path / f"{len(list(tmp_path.iterdir()))}.txt"
        paths_file.write_text("\n".join(files) + "\n")
        reader = make_reader(source, base, paths_file, {"source": name})
        return [(doc.id, doc.text) for doc in reader.run()]

    from_s3 = documents(f"{s3.url}/raw/{pattern}")
    from_disk = documents(str(small_inputs["root"] / pattern))
    assert from_s3 and from_s3 == from_disk


def _write_shards(curated_small, tokenizer, url, staging, **kwargs):
    from llm_data import tokenize_to_shards

    args = dict(seq_len=32, heldout_fraction=0.2, seed=3, staging_dir=staging)
    return tokenize_to_shards(curated_small, tokenizer, url, **args, **kwargs)


def _objects(url) -> dict[str, bytes]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    fs.invalidate_cache(root)
    return {k.removeprefix(root + "/"): fs.cat_file(k) for k in fs.find(root)}


def _files(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_shards_written_to_s3_equal_the_local_ones_and_stream_the_same(
    curated_small, tokenizer, shards, s3, tmp_path
):
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    import torch

    from llm_data import build_loader

    url = f"{s3.url}/run/shards"
    stats = _write_shards(curated_small, tokenizer, url, tmp_path / "staging")
    assert stats == shards["stats"]
    assert _objects(url) == _files(shards["out"])  # every shard, index, held-out file, stats
    assert not (tmp_path / "staging" / "shards").exists()  # the staging copy went
    with pytest.raises(FileExistsError, match=url):
        _write_shards(curated_small, tokenizer, url, tmp_path / "staging")
    args = dict(seq_len=32, batch_size=4, seed=7)
    local = build_loader(shards["out"], **args)
    remote = build_loader(url, cache_dir=tmp_path / "cache", **args)
    try:
        n = local.steps_per_epoch + 1
        for a, b in zip(itertools.islice(local, n), itertools.islice(remote, n), strict=True):
            assert torch.equal(a["input_ids"], b["input_ids"])
    finally:
        local.close()
        remote.close()


def test_a_cut_upload_is_retried(curated_small, tokenizer, shards, s3, s3_cut, tmp_path):
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    s3_cut.fail("books/00000/shard.00000.mds", times=1)
    s3_cut.fail("shard_stats.json", times=1)
    url = f"{s3.url}/run/shards"
    _write_shards(curated_small, tokenizer, url, tmp_path / "staging")
    assert len(s3_cut.cut) == 2  # both were cut once, and retried
    assert _objects(url) == _files(shards["out"])


def test_a_lasting_failure_names_the_object_commits_nothing_and_resumes(
    curated_small, tokenizer, shards, s3, s3_cut, tmp_path, monkeypatch
):
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 2)  # fewer backoff sleeps (5 by default)
    from llm_data import InputError, build_loader
    from llm_data.training_data.remote import UploadError

    url = f"{s3.url}/run/shards"
    s3_cut.fail("code/00000/shard.00000.mds", times=100)
    with pytest.raises(UploadError, match=f"{url}/code/00000/shard.00000.mds failed"):
        _write_shards(curated_small, tokenizer, url, tmp_path / "staging")
    left = _objects(url)
    assert "books/00000/shard.00000.mds" in left and "shard_stats.json" not in left  # half-written
    with pytest.raises(InputError, match="holds no complete shards"):
        build_loader(url, seq_len=32, batch_size=4, cache_dir=tmp_path / "cache")
    s3_cut.rules.clear()
    sent = len(s3_cut.puts)
    _write_shards(curated_small, tokenizer, url, tmp_path / "staging")  # resumes the upload
    resent = s3_cut.puts[sent:]
    assert any("code/00000/shard.00000.mds" in line for line in resent)
    assert not any("books/00000/shard" in line for line in resent)  # kept, not sent again
    assert _objects(url) == _files(shards["out"])


def test_cli_writes_shards_to_s3_and_no_credential_reaches_a_file_or_log(
    curated_small, tokenizer_json, s3, s3_secret, tmp_path
):
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    from llm_data import build_loader
    from llm_data.cli import main

    url = f"{s3.url}/run/shards"
    args = ["--tokenizer", str(tokenizer_json), "--eos-token", "<|endoftext|>", "--seq-len", "32"]
    staging = ["--staging-dir", str(tmp_path / "staging")]
    assert main(["shards", str(curated_small), "--out", url, *args, *staging]) == 0
    loader = build_loader(url, seq_len=32, batch_size=4, seed=7, cache_dir=tmp_path / "cache")
    try:
        next(iter(loader))
    finally:
        loader.close()
    assert s3_secret.log.stat().st_size > 0  # the clients' debug records were captured
    assert s3_secret.holders() == []
