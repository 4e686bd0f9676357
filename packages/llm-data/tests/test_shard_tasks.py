"""Shards as datatrove tasks: the output does not depend on the task count, the numpy packer
equals a token-by-token reference, bad input names its file and line, a failed run resumes."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
from llm_data import InputError, tokenize_to_shards
from llm_data.training_data.shards import _share, pack


def _reference_pack(docs: list[list[int]], eos: int, sample_len: int):
    """Token by token, as the packer did before numpy: the samples and the leftover."""
    buffer, rows = [], []
    for ids in docs:
        for token in [*ids, eos]:
            buffer.append(token)
            if len(buffer) == sample_len:
                rows.append(buffer)
                buffer = []
    return rows, buffer


def test_numpy_packer_equals_the_python_reference():
    rng = np.random.default_rng(0)
    for sample_len in (1, 2, 7, 33):
        docs = [rng.integers(0, 500, rng.integers(0, 40)).tolist() for _ in range(50)]
        carry, rows = np.empty(0, dtype=np.uint16), []
        for start in range(0, len(docs), 8):  # in batches, carrying the rest across calls
            got, carry = pack(carry, docs[start : start + 8], 999, sample_len)
            assert got.dtype == np.uint16 and got.shape[1:] == (sample_len,)
            rows += got.tolist()
        expected_rows, expected_rest = _reference_pack(docs, 999, sample_len)
        assert rows == expected_rows and carry.tolist() == expected_rest


def test_task_shares_are_contiguous_and_balanced_by_bytes():
    sizes = [100, 1, 1, 1, 100, 1, 0]
    shares = [_share(sizes, rank, 2) for rank in range(2)]
    assert shares == [[0, 1, 2], [3, 4, 5, 6]]  # each holds one big file
    assert [_share([0] * 6, rank, 3) for rank in range(3)] == [[0, 1], [2, 3], [4, 5]]
    assert [_share([10, 0], rank, 3) for rank in range(3)] == [[], [0], [1]]  # may be empty


@pytest.fixture(scope="module")
def curated_files(curated_small, tmp_path_factory) -> Path:
    """`curated_small` split into several files per source (books: 2, code: 3)."""
    root = tmp_path_factory.mktemp("curated_files")
    for source, n_files in (("books", 2), ("code", 3)):
        with gzip.open(curated_small / source / "00000.jsonl.gz", "rt") as f:
            lines = f.readlines()
        (root / source).mkdir()
        for i in range(n_files):
            with gzip.open(root / source / f"{i:05d}.jsonl.gz", "wt") as f:
                f.writelines(lines[i::n_files])
    return root


def _samples(out: Path, source: str) -> list[tuple[int, ...]]:
    from streaming import StreamingDataset

    dataset = StreamingDataset(local=str(out / source), shuffle=False, batch_size=1)
    samples = [tuple(dataset[i]["tokens"].tolist()) for i in range(len(dataset))]
    del dataset
    return samples


def _run(curated, tokenizer, out, **kwargs) -> dict:
    return tokenize_to_shards(
        curated, tokenizer, out, seq_len=16, heldout_fraction=0.2, seed=3, **kwargs
    )


def test_one_and_three_tasks_give_the_same_shards(curated_files, tokenizer, tmp_path):
    one = _run(curated_files, tokenizer, tmp_path / "one", tasks=1)
    three = _run(curated_files, tokenizer, tmp_path / "three", tasks=3)
    assert one == three
    assert json.loads((tmp_path / "three" / "shard_stats.json").read_text()) == three
    for source in ("books", "code"):
        a, b = _samples(tmp_path / "one", source), _samples(tmp_path / "three", source)
        assert len(a) == one["sources"][source]["samples"] > 0
        assert sorted(a) == sorted(b)
        assert a == b  # contiguous shares merged in rank order: even the order is the same
    assert (tmp_path / "one" / "heldout.jsonl").read_text() == (
        tmp_path / "three" / "heldout.jsonl"
    ).read_text()
    # each task wrote its own MDS folder; the merged index points into them
    index = json.loads((tmp_path / "three" / "books" / "index.json").read_text())
    folders = {s["raw_data"]["basename"].split("/")[0] for s in index["shards"]}
    assert folders == {"00000", "00001"}  # by bytes: a books file each, the code files task 2
    # the index streaming's merge_index writes from the same task folders
    from streaming.base.util import merge_index

    theirs = tmp_path / "theirs"
    shutil.copytree(tmp_path / "three" / "books", theirs)
    (theirs / "index.json").unlink()  # streaming moves its merged index in: none may be there
    merge_index([str(p) for p in sorted(theirs.glob("0*/index.json"))], str(theirs))
    assert json.loads((theirs / "index.json").read_text()) == index
    shutil.rmtree(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "three"]


def test_damaged_curated_file_names_file_and_line(curated_files, tokenizer, tmp_path):
    cur = tmp_path / "cur"
    (cur / "code").mkdir(parents=True)
    data = (curated_files / "code" / "00001.jsonl.gz").read_bytes()
    (cur / "code" / "00000.jsonl.gz").write_bytes(
        (curated_files / "code" / "00000.jsonl.gz").read_bytes()
    )
    (cur / "code" / "00001.jsonl.gz").write_bytes(data[: len(data) // 2])  # truncated gzip
    with pytest.raises(InputError, match=r"00001\.jsonl\.gz:\d+: cannot read"):
        _run(cur, tokenizer, tmp_path / "out", tasks=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur"]  # bad input: nothing kept


class _FailOnce:
    """The test tokenizer, failing on the first batch that holds `marker` while `armed`."""

    def __init__(self, inner, marker: str):
        self.inner, self.marker, self.armed, self.calls = inner, marker, True, 0
        self.eos_id, self.vocab_size = inner.eos_id, inner.vocab_size

    def encode_batch(self, texts):
        self.calls += 1
        if self.armed and any(self.marker in t for t in texts):
            raise RuntimeError("killed mid-task")
        return self.inner.encode_batch(texts)


def test_failed_run_resumes_from_completed_tasks(curated_files, tokenizer, tmp_path):
    # the last code file (task 2 of 3: all the code, as the books files weigh a task each)
    # fails after tasks 0 and 1 completed
    with gzip.open(curated_files / "code" / "00002.jsonl.gz", "rt") as f:
        marker = json.loads(f.readline())["text"][:40]
    flaky = _FailOnce(tokenizer, marker)
    with pytest.raises(RuntimeError, match="killed mid-task"):
        _run(curated_files, flaky, tmp_path / "out", tasks=3)
    partial = tmp_path / ".out.partial"
    assert partial.is_dir() and not (tmp_path / "out").exists()
    completions = partial / "_work" / "logs" / "shards" / "completions"
    assert sorted(p.name for p in completions.iterdir()) == ["00000", "00001"]
    done = {p: p.stat().st_mtime_ns for p in partial.glob("*/0000[01]/index.json")}
    assert len(done) == 2  # books in tasks 0 and 1 (task 2 failed)
    flaky.armed = False
    resumed = _run(curated_files, flaky, tmp_path / "out", tasks=3)
    for path, mtime in done.items():  # tasks 0 and 1 were skipped, not written again
        assert (tmp_path / "out" / path.relative_to(partial)).stat().st_mtime_ns == mtime
    fresh = _run(curated_files, tokenizer, tmp_path / "fresh", tasks=1)
    assert resumed == fresh
    assert _samples(tmp_path / "out", "code") == _samples(tmp_path / "fresh", "code")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "out"]


@pytest.mark.slow  # spawns 2 workers that import datatrove
def test_two_workers_in_the_local_pool_give_the_same_shards(
    curated_files, tokenizer_json, tmp_path
):
    """Tasks in spawned worker processes: the tokenizer travels pickled (and keeps its
    special-token switch), the result equals one task in this process."""
    from llm_data.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_json, "<|endoftext|>")
    one = _run(curated_files, tok, tmp_path / "one", tasks=1)
    pooled = _run(curated_files, tok, tmp_path / "pool", tasks=3, workers=2)
    assert one == pooled
    for source in ("books", "code"):
        assert _samples(tmp_path / "one", source) == _samples(tmp_path / "pool", source)


class _Recording:
    """The test tokenizer, recording the text lengths of every `encode_batch` call (in a class
    attribute: the executor hands each task a copy of the tokenizer)."""

    calls: list[list[int]] = []

    def __init__(self, inner):
        self.inner, self.eos_id, self.vocab_size = inner, inner.eos_id, inner.vocab_size

    def encode_batch(self, texts):
        _Recording.calls.append([len(t) for t in texts])
        return self.inner.encode_batch(texts)


def test_encode_batches_are_bounded_in_characters_and_leave_the_shards_unchanged(
    curated_files, tokenizer, tmp_path, monkeypatch
):
    """Memory per task is bounded by a batch, not by the documents of a file: a batch is
    encoded as soon as it holds `_BATCH_CHARS` characters, and where it is cut changes nothing."""
    from llm_data.training_data import shards

    whole = _run(curated_files, tokenizer, tmp_path / "whole", tasks=1)
    monkeypatch.setattr(shards, "_BATCH_CHARS", 5000)  # books: 8 kB texts, code: 3 kB
    _Recording.calls = []
    cut = _run(curated_files, _Recording(tokenizer), tmp_path / "cut", tasks=1)
    assert cut == whole
    for source in ("books", "code"):
        assert _samples(tmp_path / "cut", source) == _samples(tmp_path / "whole", source)
    batches = [c for c in _Recording.calls if c]
    assert max(map(len, batches)) == 2  # code texts still share a batch, two at a time
    assert all(sum(lengths[:-1]) < 5000 for lengths in batches)  # full: encoded at once


def test_a_shard_task_imports_no_torch(curated_files, tokenizer_json, tmp_path):
    """A task in a fresh process (a spawned worker, a Slurm array task) writes its shards
    without importing streaming, and so torch: that import cost each worker seconds of CPU."""
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
from llm_data.tokenizer import load_tokenizer
from llm_data.training_data.shards import ShardTask, list_curated_sources

files = [(n, str(p)) for n, ps in list_curated_sources(Path({str(curated_files)!r})).items()
         for p in ps]
stats = dict(dtype="uint16", sample_len=17, eos_id=0, heldout_fraction=0.0, seed=0)
tok = load_tokenizer({str(tokenizer_json)!r}, "<|endoftext|>")
ShardTask(Path({str(tmp_path)!r}), files, [1] * len(files), tok, stats).run()
print(sorted(m for m in ("torch", "streaming") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(p.name for p in tmp_path.glob("*/00000/shard.*.mds")) != []
