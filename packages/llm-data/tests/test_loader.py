from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
pytest.importorskip("torch", reason="needs the [shards] extra")
import torch

from llm_data import InputError, build_loader
from llm_data.training_data.mixture import MixtureConfig, MixturePhase, SeqLenPhase


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


def test_load_state_dict_rewinds_a_loader_already_in_a_later_epoch(make_loader, shards):
    # streaming ignores a resume state older than its own epoch counter: it must not here.
    per_epoch = sum(s["samples"] for s in shards["stats"]["sources"].values()) // 64
    loader = make_loader(batch_size=64)
    it = iter(loader)
    first = [next(it)["input_ids"].clone() for _ in range(3)]
    state = loader.state_dict()
    rest = [next(it)["input_ids"].clone() for _ in range(2 * per_epoch)]
    assert loader.state_dict()["epoch"] == 2 and len(first) == 3
    loader.load_state_dict(state)
    again = _take(loader, 2)
    assert all(torch.equal(a, b) for a, b in zip(rest[:2], again, strict=True))


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
            loader.shard_hashes.wait()  # the hash is checked in the background
        finally:
            loader.close()


# --- Several ranks: the position is global (issue 10) ---------------------------------------

WORKER = Path(__file__).with_name("loader_rank_worker.py")
STEPS = 5  # loader_rank_worker.STEPS


def _rows(batch) -> list[tuple]:
    return sorted(map(tuple, batch))


def _as_lists(loader, n):
    return [b.tolist() for b in _take(loader, n)]


def _union_per_step(rank0, rank1):
    return [_rows(a + b) for a, b in zip(rank0, rank1, strict=True)]


@pytest.fixture(scope="module")
def world1_run(shards):
    """World size 1, batch 8 (the global batch of 2 ranks x 4): STEPS batches, state, STEPS more."""
    loader = build_loader(shards["out"], seq_len=32, batch_size=8, seed=7)
    try:
        it = iter(loader)
        [next(it) for _ in range(STEPS)]
        state = loader.state_dict()
        return {"state": state, "after": [next(it)["input_ids"].tolist() for _ in range(STEPS)]}
    finally:
        loader.close()


@pytest.fixture(scope="module")
def two_ranks(shards, world1_run, tmp_path_factory) -> list[dict]:
    """Rank 0 and 1 of world size 2 on one node, each a process (see loader_rank_worker.py)."""
    tmp = tmp_path_factory.mktemp("two_ranks")
    (tmp / "world1_state.json").write_text(json.dumps(world1_run["state"]))
    procs = []
    for rank in range(2):
        env = os.environ | {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
        }
        args = [sys.executable, str(WORKER), str(shards["out"]), str(tmp)]
        procs.append(subprocess.Popen(args, env=env))
    try:
        codes = [p.wait(timeout=400) for p in procs]  # a hang guard; a loaded machine is slow
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0]
    runs = [json.loads((tmp / f"rank{rank}.json").read_text()) for rank in range(2)]
    for scenario in runs[0]:
        # One rank's error leaves the other in a collective it then fails (gloo's "connection
        # closed"): each rank's result names both, so the first error is not hidden.
        errors = [f"rank {r}: {run[scenario]['error']}" for r, run in enumerate(runs)
                  if "error" in run[scenario]]  # fmt: skip
        for run in runs if errors else []:
            run[scenario] = {"error": "\n".join(errors)}
    return runs


def _result(run: dict, scenario: str) -> dict:
    assert "error" not in run[scenario], run[scenario]["error"]
    return run[scenario]


def test_two_ranks_resume_matches_uninterrupted(two_ranks):
    for run in two_ranks:
        interrupted, resumed = _result(run, "interrupted"), _result(run, "resumed")
        assert resumed["after"] == interrupted["after"]
    states = [run["interrupted"]["state"] for run in two_ranks]
    assert states[0] == states[1]  # one global position, whichever rank saves it
    assert states[0]["sample_in_epoch"] == STEPS * 4 * 2 and states[0]["world_size"] == 2
    rank0, rank1 = (run["interrupted"]["before"] + run["interrupted"]["after"] for run in two_ranks)
    assert not set(map(tuple, sum(rank0, []))) & set(map(tuple, sum(rank1, [])))


def test_two_ranks_see_each_sample_once_per_epoch(two_ranks, make_loader, shards):
    samples = sum(s["samples"] for s in shards["stats"]["sources"].values())
    every = Counter(map(tuple, torch.cat(_take(make_loader(batch_size=1), samples)).tolist()))
    epochs = [_result(run, "epoch") for run in two_ranks]
    seen = Counter(tuple(row) for e in epochs for batch in e["batches"] for row in batch)
    assert len(epochs[0]["batches"]) == len(epochs[1]["batches"]) == samples // 8
    assert not seen - every  # no sample twice (rows of the epoch, with their multiplicity)
    assert sum(seen.values()) == samples - samples % 8
    assert epochs[0]["dropped"] == epochs[1]["dropped"] == samples % 8


def test_state_of_two_ranks_resumes_on_one(two_ranks, shards):
    rank0, rank1 = (_result(run, "interrupted") for run in two_ranks)
    loader = build_loader(shards["out"], seq_len=32, batch_size=8, seed=7)
    try:
        loader.load_state_dict(rank1["state"])
        resumed = _as_lists(loader, STEPS)
    finally:
        loader.close()
    assert [_rows(b) for b in resumed] == _union_per_step(rank0["after"], rank1["after"])


def test_state_of_one_rank_resumes_on_two(two_ranks, world1_run):
    rank0, rank1 = (_result(run, "from_world1")["after"] for run in two_ranks)
    assert _union_per_step(rank0, rank1) == [_rows(b) for b in world1_run["after"]]


PHASES = MixtureConfig(  # loader_rank_worker.PHASES
    schedule=[
        MixturePhase(until_step=3, proportions={"books": 1}),
        MixturePhase(proportions={"books": 1, "code": 1}),
    ],
    seq_len_schedule=[SeqLenPhase(until_step=2, seq_len=8)],
)


def test_two_ranks_draw_the_phases_of_one_rank_and_resume_on_one(two_ranks, shards):
    rank0, rank1 = (_result(run, "phases") for run in two_ranks)
    args = dict(seq_len=32, batch_size=8, seed=7, mixture=PHASES, steps=8)
    loader = build_loader(shards["out"], **args)
    try:
        one_rank = [_rows(b) for b in _as_lists(loader, 8)]
    finally:
        loader.close()
    both = _union_per_step(rank0["before"] + rank0["after"], rank1["before"] + rank1["after"])
    assert both == one_rank and len(rank0["before"][0]) == 4 * 4  # 8-token rows first
    loader = build_loader(shards["out"], **args)
    try:
        loader.load_state_dict(rank1["state"])
        assert [_rows(b) for b in _as_lists(loader, 4)] == one_rank[4:]
    finally:
        loader.close()


def _state(shards, **kw):
    loader = build_loader(shards["out"], **(dict(seq_len=32, batch_size=4, seed=7) | kw))
    try:
        next(iter(loader))
        return loader.state_dict()
    finally:
        loader.close()


@pytest.mark.parametrize(
    ("saved", "what"),
    [
        (dict(batch_size=2), r"batch_size.*2.*4"),
        (dict(seed=8), r"seed.*8.*7"),
        (dict(seq_len=16), r"seq_len.*16.*32"),
        (dict(proportions={"books": 1.0}), r"mixture"),
    ],
)
def test_state_that_cannot_be_honoured_is_an_error(shards, make_loader, saved, what):
    with pytest.raises(ValueError, match=what):
        make_loader().load_state_dict(_state(shards, **saved))


def test_state_of_two_ranks_with_another_global_batch_is_an_error(two_ranks, make_loader):
    state = two_ranks[0]["interrupted"]["state"]  # world size 2 x batch size 4
    with pytest.raises(ValueError, match=r"world_size=2 x batch_size=4 .*world_size=1 x batch_si"):
        make_loader().load_state_dict(state)


def test_state_of_an_older_version_is_an_error(shards, make_loader):
    state = _state(shards)
    v1 = {k: state[k] for k in ("epoch", "sample_in_epoch", "seed", "batch_size")}
    with pytest.raises(ValueError, match="world size"):
        make_loader().load_state_dict(v1)
    v2 = v1 | {"version": 2, "world_size": 1, "sources": {"books": 0.0, "code": 0.0}}
    with pytest.raises(ValueError, match="version 2 .*no global batch count"):
        make_loader().load_state_dict(v2)
    with pytest.raises(ValueError, match="num_canonical_nodes"):
        make_loader().load_state_dict(state | {"num_canonical_nodes": 2})
