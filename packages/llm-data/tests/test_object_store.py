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
