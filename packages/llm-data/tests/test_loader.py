from __future__ import annotations

import itertools
import json
import shutil

import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
pytest.importorskip("torch", reason="needs the [shards] extra")
import torch

from llm_data import InputError, build_loader


@pytest.fixture
def make_loader(shards):
    loaders = []

    def make(**kw):
        args = dict(seq_len=32, batch_size=4, seed=7) | kw
        loader = build_loader(shards["out"], **args)
        loaders.append(loader)
        return loader

    yield make
    for loader in loaders:
        loader.close()


def _take(loader, n):
    return [b["input_ids"].clone() for b in itertools.islice(iter(loader), n)]


def test_batches_shapes_and_shifted_labels(make_loader):
    batch = next(iter(make_loader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 32)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    short = next(iter(make_loader(seq_len=16)))
    assert short["input_ids"].shape == (4, 16)


@pytest.mark.parametrize("k", [2, None])  # None: resume inside the second epoch
def test_resume_matches_uninterrupted(make_loader, shards, k):
    samples = sum(s["samples"] for s in shards["stats"]["sources"].values())
    per_epoch = samples // 4
    k = per_epoch + 1 if k is None else k
    loader = make_loader()
    it = iter(loader)
    before = [next(it)["input_ids"].clone() for _ in range(k)]
    state = loader.state_dict()
    after = [next(it)["input_ids"].clone() for _ in range(per_epoch + 2)]
    resumed = make_loader()
    resumed.load_state_dict(state)
    again = _take(resumed, per_epoch + 2)
    assert all(torch.equal(a, b) for a, b in zip(after, again, strict=True))
    assert len(before) == k and state["epoch"] == (k // per_epoch)


def test_epochs_reshuffle_same_samples(make_loader, shards):
    # Batches of one: no remainder is skipped, so each epoch is exactly every sample once.
    samples = sum(s["samples"] for s in shards["stats"]["sources"].values())
    batches = _take(make_loader(batch_size=1), 2 * samples)
    first, second = torch.cat(batches[:samples]), torch.cat(batches[samples:])
    assert not torch.equal(first, second)
    rows = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert rows(first) == rows(second)


def test_proportions_select_sources(make_loader, shards):
    n_books = shards["stats"]["sources"]["books"]["samples"]
    only_books = torch.cat(_take(make_loader(proportions={"books": 1.0, "code": 0.0}), 3))
    mixed = torch.cat(_take(make_loader(proportions={"books": 1.0, "code": 3.0}), n_books // 4))
    ordered = torch.cat(_take(make_loader(proportions={"books": 1}, shuffle=False), n_books // 4))
    book_rows = set(map(tuple, ordered.tolist()))
    assert set(map(tuple, only_books.tolist())) <= book_rows
    share = sum(tuple(r) in book_rows for r in mixed.tolist()) / len(mixed)
    assert 0.1 <= share <= 0.4  # about 1 / (1 + 3) of the samples come from books
    with pytest.raises(ValueError, match="unknown sources"):
        make_loader(proportions={"wiki": 1.0})


def test_seq_len_longer_than_shards_is_an_error(shards):
    with pytest.raises(ValueError, match="seq_len"):
        build_loader(shards["out"], seq_len=64, batch_size=2)


def test_does_not_clean_other_jobs_shared_memory(make_loader, monkeypatch):
    import streaming.base.util

    calls = []
    monkeypatch.setattr(streaming.base.util, "clean_stale_shared_memory", lambda: calls.append(1))
    next(iter(make_loader()))
    assert calls == []


def _damage(src, dst, how: str):
    shutil.copytree(src, dst)
    index = json.loads((dst / "books" / "index.json").read_text())
    shard = dst / "books" / index["shards"][0]["raw_data"]["basename"]
    if how == "zeroed":
        shard.write_bytes(bytes(shard.stat().st_size))
    elif how == "truncated":
        shard.write_bytes(shard.read_bytes()[:-100])
    else:
        shard.unlink()
    return shard


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("zeroed", "xxh64 hash"),
        ("truncated", r"\d+ bytes, index\.json says \d+"),
        ("deleted", "missing"),
    ],
)
def test_damaged_shard_is_an_error_naming_it(shards, tmp_path, how, what):
    shard = _damage(shards["out"], tmp_path / "shards", how)
    with pytest.raises(InputError, match=rf"{shard}.*{what}"):
        loader = build_loader(tmp_path / "shards", seq_len=32, batch_size=2)
        try:
            next(iter(loader))
        finally:
            loader.close()
