"""The loader draws what the mixture says: proportions, epochs, phases and sequence lengths,
and resumes exactly inside any phase."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
pytest.importorskip("torch", reason="needs the [shards] extra")
import torch

from llm_data import build_loader
from llm_data.training_data.mixture import MixtureConfig, MixturePhase, SeqLenPhase

SEQ_LEN = 32


@pytest.fixture
def make_loader(shards):
    loaders = []

    def make(**kw):
        loader = build_loader(shards["out"], **(dict(seq_len=SEQ_LEN, batch_size=4, seed=7) | kw))
        loaders.append(loader)
        return loader

    yield make
    for loader in loaders:
        loader.close()


@pytest.fixture
def rows_of(make_loader, shards):
    """Source -> set of its sample rows (input_ids), read in order from a one-source loader."""
    out = {}
    for source, stats in shards["stats"]["sources"].items():
        n = stats["samples"]
        loader = make_loader(proportions={source: 1}, shuffle=False, batch_size=1)
        out[source] = {tuple(b["input_ids"][0].tolist()) for b in itertools.islice(loader, n)}
        loader.close()
    return out


def _source(row, rows_of) -> str:
    (source,) = [s for s, rows in rows_of.items() if tuple(row) in rows]
    return source


def _batches(loader, n):
    return [b["input_ids"].clone() for b in itertools.islice(iter(loader), n)]


def test_observed_proportions_match_targets_within_binomial_tolerance(make_loader, rows_of):
    p_books = 0.3
    loader = make_loader(proportions={"books": p_books, "code": 1 - p_books}, steps=200)
    n_batches = 25
    drawn = [_source(r, rows_of) for b in _batches(loader, n_batches) for r in b.tolist()]
    n = len(drawn)
    sigma = math.sqrt(n * p_books * (1 - p_books))
    assert abs(Counter(drawn)["books"] - n * p_books) <= 4 * sigma  # 100 draws: within 18


def test_epochs_repeat_every_sample_that_often(make_loader, shards, rows_of):
    # The budget is one epoch of the phase: books twice, code fills the rest.
    n_books = shards["stats"]["sources"]["books"]["samples"]
    steps = (2 * n_books + 40) // 4
    mix = MixtureConfig(epochs={"books": 2}, proportions={"code": 1})
    loader = make_loader(mixture=mix, steps=steps)
    assert loader.steps_per_epoch == steps and loader.dropped_per_epoch == 0
    seen = Counter(tuple(r) for b in _batches(loader, steps) for r in b.tolist())
    books = {row: k for row, k in seen.items() if row in rows_of["books"]}
    assert len(books) == len(rows_of["books"]) and set(books.values()) == {2}
    table = loader.mixture_table()
    assert [(r.source, round(r.epochs, 6)) for r in table.total][0] == ("books", 2.0)


SCHEDULE = MixtureConfig(
    schedule=[
        MixturePhase(until_step=3, proportions={"books": 1}),
        MixturePhase(proportions={"code": 1}),
    ],
    seq_len_schedule=[SeqLenPhase(until_step=2, seq_len=8)],
)


def test_phases_and_seq_len_schedule_by_step(make_loader, rows_of):
    # 2 batches per step: phase 0 is batches 0-5, short sequences batches 0-3.
    loader = make_loader(mixture=SCHEDULE, batches_per_step=2, steps=8)
    batches = list(itertools.islice(iter(loader), 10))
    shapes = [tuple(b["input_ids"].shape) for b in batches]
    assert shapes == [(16, 8)] * 4 + [(4, SEQ_LEN)] * 6  # tokens per batch kept
    full = [b["input_ids"].reshape(4, SEQ_LEN) for b in batches]
    assert all(torch.equal(b["labels"][:, :-1], b["input_ids"][:, 1:]) for b in batches)
    sources = [{_source(r, rows_of) for r in b.tolist()} for b in full]
    assert sources == [{"books"}] * 6 + [{"code"}] * 4
    assert loader.state_dict()["phase"] == 1


def test_short_rows_are_the_samples_cut_in_pieces(make_loader):
    short = next(
        iter(make_loader(mixture=MixtureConfig(seq_len_schedule=SCHEDULE.seq_len_schedule)))
    )
    full = next(iter(make_loader()))
    # Row j of a sample: tokens [8 j, 8 j + 8] of it; its labels run one token further.
    assert torch.equal(short["input_ids"].reshape(4, SEQ_LEN), full["input_ids"])
    assert torch.equal(short["labels"].reshape(4, SEQ_LEN), full["labels"])


@pytest.mark.parametrize("k", [3, 8])  # saved in phase 0 (short rows), in phase 1
def test_run_killed_in_a_phase_resumes_to_the_same_batches(make_loader, k):
    args = dict(mixture=SCHEDULE, batches_per_step=2, steps=8)
    loader = make_loader(**args)
    it = iter(loader)
    [next(it) for _ in range(k)]
    state = loader.state_dict()
    after = [next(it)["input_ids"].clone() for _ in range(12 - k)]
    loader.close()
    resumed = make_loader(**args)
    resumed.load_state_dict(state)
    again = _batches(resumed, 12 - k)
    assert all(torch.equal(a, b) for a, b in zip(after, again, strict=True))
    assert state["batch"] == k and state["phase"] == (k >= 6)


def test_state_of_another_schedule_or_an_edited_one_is_an_error(make_loader):
    loader = make_loader(mixture=SCHEDULE, batches_per_step=2, steps=8)
    next(iter(loader))
    state = loader.state_dict()
    with pytest.raises(ValueError, match="batches_per_step=2 .now 1"):
        make_loader(mixture=SCHEDULE, steps=16).load_state_dict(state)
    other = MixtureConfig(schedule=SCHEDULE.schedule)  # no seq_len schedule
    with pytest.raises(ValueError, match="seq_len_schedule"):
        make_loader(mixture=other, batches_per_step=2, steps=8).load_state_dict(state)
    with pytest.raises(ValueError, match="edited"):
        loader.load_state_dict(state | {"epoch": 3})


def test_seq_len_schedule_must_divide_seq_len(make_loader):
    with pytest.raises(ValueError, match="seq_len=12 .until step 2. must divide"):
        make_loader(mixture=MixtureConfig(seq_len_schedule=[SeqLenPhase(until_step=2, seq_len=12)]))


def test_more_steps_resume_exactly_before_the_last_phase_and_go_on_in_it(make_loader, caplog):
    # The last phase's budget is the run's steps: raising them changes only that phase.
    args = dict(mixture=SCHEDULE, batches_per_step=2)
    loader = make_loader(**args, steps=8)
    it = iter(loader)
    [next(it) for _ in range(3)]
    early = loader.state_dict()
    [next(it) for _ in range(5)]
    late = loader.state_dict()  # batch 8: in the last phase
    loader.close()
    longer = make_loader(**args, steps=16)
    reference = _batches(longer, 8)
    longer.close()
    resumed = make_loader(**args, steps=16)
    resumed.load_state_dict(early)
    assert all(torch.equal(a, b) for a, b in zip(reference[3:], _batches(resumed, 5), strict=True))
    with caplog.at_level("WARNING", logger="llm_data.training_data.loader"):
        resumed.load_state_dict(late)
    assert "another budget" in caplog.text and resumed.state_dict()["batch"] == 8
    assert _batches(resumed, 1)[0].shape == (4, SEQ_LEN)
    shorter = make_loader(mixture=MixtureConfig(schedule=SCHEDULE.schedule[1:]), batches_per_step=2)
    with pytest.raises(ValueError, match="mixture phases up to 0"):
        shorter.load_state_dict(early | {"seq_len_schedule": []})


def test_mapped_reads_equal_streamings_reads(shards):
    from streaming import Stream, StreamingDataset

    from llm_data.training_data.mapped import MappedStreamingDataset

    streams = [Stream(local=str(shards["out"] / s)) for s in ("books", "code")]
    dataset = MappedStreamingDataset(streams=streams, batch_size=1, num_canonical_nodes=1)
    try:
        for i in range(dataset.num_samples):
            mine, theirs = dataset.get_item(i), StreamingDataset.get_item(dataset, i)
            assert mine.keys() == theirs.keys() == {"tokens"}
            assert mine["tokens"].dtype == theirs["tokens"].dtype
            assert np.array_equal(mine["tokens"], theirs["tokens"])
    finally:
        dataset.close_maps()
