import gzip
import json

import pytest

from llm_tokenize import CorpusError, TrainingSource
from llm_tokenize.corpus import Document, load_source, read_documents, sample_mixture, stats_sample


def write_jsonl(path, records, compress=False):
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")
    return path


def test_reads_plain_and_gzip_documents_with_language(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "x", "metadata": {"language": "de"}}])
    write_jsonl(tmp_path / "b.jsonl.gz", [{"id": "2", "text": "yy"}], compress=True)
    (tmp_path / "notes.txt").write_text("not data")
    docs, stats = load_source(TrainingSource(name="s", paths=[str(tmp_path)]))
    assert [(d.id, d.text, d.source, d.language) for d in docs] == [
        ("1", "x", "s", "de"),
        ("2", "yy", "s", None),
    ]
    assert (stats.docs, stats.bytes) == (2, 3)
    assert [f["path"].rsplit("/", 1)[1] for f in stats.files] == ["a.jsonl", "b.jsonl.gz"]
    assert all(len(f["sha256"]) == 64 for f in stats.files)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"text": "ok"}\n{not json\n', r"bad.jsonl:2: invalid JSON"),
        ('{"text": "ok"}\n{"id": 3}\n', r"bad.jsonl:2: field 'text' missing or not a string"),
        ('{"text": "ok"}\n[1, 2]\n', r"bad.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, content, error):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(CorpusError, match=error):
        list(read_documents(tmp_path / "bad.jsonl", "s"))


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "broken.jsonl.gz").write_bytes(b"this is not gzip")
    with pytest.raises(CorpusError, match=r"broken.jsonl.gz:\d+: cannot read"):
        load_source(TrainingSource(name="s", paths=[str(tmp_path / "broken.jsonl.gz")]))


def test_path_matching_nothing_names_source_and_path(tmp_path):
    with pytest.raises(CorpusError, match=r"source 'web': .*nowhere/\*.jsonl is no JSONL"):
        load_source(TrainingSource(name="web", paths=[str(tmp_path / "nowhere/*.jsonl")]))
    with pytest.raises(CorpusError, match="source 'web': no paths"):
        load_source(TrainingSource(name="web"))


def docs_of(source, sizes):
    return [Document(id=str(i), text="a" * n, source=source) for i, n in enumerate(sizes)]


def test_mixture_repeats_a_small_source_and_subsamples_a_large_one():
    docs = {"big": docs_of("big", [100] * 90), "small": docs_of("small", [100] * 10)}
    chosen = sample_mixture(docs, {"big": 0.5, "small": 0.5}, total_bytes=10_000)
    assert len(chosen["big"]) == 50 and len(chosen["small"]) == 50  # 5,000 bytes each
    assert [d.id for d in chosen["small"][:10]] == [d.id for d in chosen["small"][10:20]]
    # The subsample is spread over the whole source, not its first documents.
    assert chosen["big"][0].id == "0" and int(chosen["big"][-1].id) > 80
    assert sample_mixture(docs, {"big": 0.5, "small": 0.5}, 10_000) == chosen  # deterministic


def test_mixture_of_an_empty_source_is_an_error():
    docs = {"a": docs_of("a", [10]), "b": docs_of("b", [0])}
    with pytest.raises(CorpusError, match="source 'b': no text"):
        sample_mixture(docs, {"a": 0.5, "b": 0.5}, 100)


def test_stats_sample_bounds_each_source_and_language():
    docs = docs_of("web", [100] * 50) + docs_of("code", [1000] * 3)
    for d in docs[:20]:
        d.language = "ja"
    sample = stats_sample(docs, max_bytes_per_group=1000)
    by_group = {}
    for d in sample:
        by_group.setdefault((d.source, d.language), []).append(d)
    assert {k: len(v) for k, v in by_group.items()} == {
        ("web", "ja"): 10,
        ("web", None): 10,
        ("code", None): 1,
    }
    assert sample == [d for d in docs if d in sample]  # original order
    assert stats_sample(docs, max_bytes_per_group=10**9) == docs
