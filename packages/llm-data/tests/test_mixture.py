"""Mixture resolution and the MPT-style table: plain arithmetic, no torch or streaming."""

from __future__ import annotations

import logging

import pytest

from llm_data.training_data.mixture import (
    MixtureConfig,
    MixturePhase,
    MixtureTable,
    SeqLenPhase,
    mixture_table,
    resolve_mixture,
)

AVAILABLE = {"web": 1000, "books": 50, "code": 200, "empty": 0}


def test_proportions_split_the_budget_exactly():
    (phase,) = resolve_mixture(
        AVAILABLE, MixtureConfig(proportions={"web": 2, "code": 1}), samples_per_step=10, steps=31
    )
    assert phase.choose == {"code": 103, "web": 207}  # 310 x 1/3 = 103.3, x 2/3 = 206.7
    assert phase.epoch_size == phase.run_samples == 310


def test_epochs_are_absolute_and_proportions_share_the_rest():
    mix = MixtureConfig(proportions={"web": 3, "code": 1}, epochs={"books": 2.5})
    (phase,) = resolve_mixture(AVAILABLE, mix, samples_per_step=10, steps=100)
    assert phase.choose == {"books": 125, "code": 219, "web": 656}  # 875 left: 656.25 / 218.75
    assert phase.epoch_size == 1000


def test_without_a_budget_an_epoch_is_every_sample_once():
    (by_size,) = resolve_mixture(AVAILABLE, MixtureConfig(), samples_per_step=10)
    assert by_size.choose == {"books": 50, "code": 200, "web": 1000} and by_size.run_samples is None
    (mixed,) = resolve_mixture(
        AVAILABLE, MixtureConfig(proportions={"web": 1}, epochs={"books": 2}), samples_per_step=1
    )
    assert mixed.choose == {"books": 100, "web": 950}  # streaming's epoch: 1050 samples


def test_epochs_that_leave_no_room_are_an_error():
    mix = MixtureConfig(proportions={"web": 1}, epochs={"code": 3})
    with pytest.raises(ValueError, match=r"phase 0: epochs of \['code'\] take 600 .* of the phase"):
        resolve_mixture(AVAILABLE, mix, samples_per_step=10, steps=50)


@pytest.mark.parametrize("name", ["wiki", "empty"])
def test_unknown_or_empty_source_is_an_error(name):
    with pytest.raises(ValueError, match=rf"unknown sources \['{name}'\].*available"):
        resolve_mixture(AVAILABLE, MixtureConfig(epochs={name: 1}), samples_per_step=1)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        (dict(proportions={"web": 1}, epochs={"web": 1}), r"both a proportion and epochs"),
        (dict(proportions={"web": -1}), r"proportions\.web=-1 is invalid"),
        (dict(epochs={"web": float("nan")}), r"epochs\.web=nan is invalid"),
        (dict(proportions={"web": 0}), r"every weight is 0"),
    ],
)
def test_phase_validation_names_the_field(kwargs, what):
    with pytest.raises(ValueError, match=what):
        MixturePhase(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        (dict(schedule=[MixturePhase(until_step=5)]), r"until_step null"),
        (dict(schedule=[MixturePhase(), MixturePhase()]), r"until_step null"),
        (
            dict(schedule=[MixturePhase(until_step=5), MixturePhase(until_step=5), MixturePhase()]),
            r"must increase",
        ),
        (dict(proportions={"web": -1}), r"^proportions\.web=-1 is invalid"),
        (dict(seq_len_schedule=[SeqLenPhase(until_step=9, seq_len=8)] * 2), r"must increase"),
        (dict(max_epochs=0), r"max_epochs"),
    ],
)
def test_config_validation(kwargs, what):
    with pytest.raises(ValueError, match=what):
        MixtureConfig(**kwargs)


def test_schedule_phases_have_their_own_budgets():
    mix = MixtureConfig(
        schedule=[
            MixturePhase(until_step=8, proportions={"web": 1}),
            MixturePhase(proportions={"books": 1, "code": 1}),
        ]
    )
    first, last = resolve_mixture(AVAILABLE, mix, samples_per_step=10, steps=12)
    assert (first.start_step, first.end_step, first.choose) == (0, 8, {"web": 80})
    assert (last.start_step, last.end_step, last.choose) == (8, None, {"books": 20, "code": 20})
    assert (first.run_samples, last.run_samples) == (80, 40)
    assert mix.seq_len_at(1, 64) == 64
    default_first = MixtureConfig(
        proportions={"code": 1},
        schedule=[MixturePhase(until_step=8), MixturePhase(epochs={"web": 1})],
    )
    first, last = resolve_mixture(AVAILABLE, default_first, samples_per_step=10, steps=12)
    assert (first.choose, last.choose) == ({"code": 80}, {"web": 1000})


def test_table_reports_tokens_proportions_epochs_and_warns(caplog):
    mix = MixtureConfig(proportions={"web": 1}, epochs={"books": 6}, max_epochs=4)
    with caplog.at_level(logging.WARNING, logger="llm_data.training_data.mixture"):
        table = mixture_table(AVAILABLE, mix, seq_len=16, samples_per_step=8, steps=100)
    assert table.tokens == 100 * 8 * 16
    web, books = table.total  # in the shards' order
    assert (books.source, books.tokens_available, books.tokens_used) == ("books", 800, 4800)
    assert books.epochs == pytest.approx(6.0) and books.proportion == pytest.approx(300 / 800)
    assert (web.tokens_available, web.tokens_used) == (16000, 8000)
    assert web.epochs == pytest.approx(0.5)
    assert len(table.warnings) == 1 and "'books' repeats 6.00 epochs" in table.warnings[0]
    assert "Muennighoff" in caplog.text
    md = table.markdown()
    assert "| source | tokens available | proportion | epochs | tokens used |" in md
    assert "| books | 800 | 0.375 | 6.00 | 4,800 |" in md and "Warning: source 'books'" in md
    assert MixtureTable.from_dict(table.to_dict()) == table


def test_table_of_a_schedule_counts_what_the_run_trains():
    mix = MixtureConfig(
        schedule=[
            MixturePhase(until_step=10, proportions={"web": 1}),
            MixturePhase(until_step=40, proportions={"code": 1}),  # cut at the run's step 20
            MixturePhase(proportions={"books": 1}),
        ]
    )
    table = mixture_table(AVAILABLE, mix, seq_len=4, samples_per_step=10, tokens=20 * 10 * 4 + 3)
    assert [r.source for r in table.total] == ["web", "code"]
    assert [r.tokens_used for r in table.total] == [400, 400]  # 100 samples each
    code = table.phases[1][1][0]
    assert code.epochs == pytest.approx(0.5)  # 100 of the phase's 300 samples, 200 available
    assert table.warnings == ["phase 2 starts after step 40: it never trains"]
    assert "whole run:" in table.markdown() and "phase 1, steps 11-40:" in table.markdown()


def test_table_reads_shard_stats(tmp_path):
    with pytest.raises(FileNotFoundError, match="shard_stats.json not found"):
        mixture_table(tmp_path, MixtureConfig(), seq_len=4, samples_per_step=1, steps=1)
    with pytest.raises(ValueError, match="steps or as tokens"):
        mixture_table(AVAILABLE, MixtureConfig(), seq_len=4, samples_per_step=1)
