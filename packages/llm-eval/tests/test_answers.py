"""Answer metrics after the harness's normalisations (cases worked out by hand)."""

import pytest

from llm_eval.answers import contains, exact_match, f1, normalize_answer


def test_normalize_answer_is_squads():
    assert normalize_answer("  The Cat, sat!  on a   mat.") == "cat sat on mat"
    assert normalize_answer("Theory") == "theory"  # 'the' only as a word


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        (" Mitochondria.", ["mitochondria"], 1.0),  # case, punctuation, outer spaces
        ("the mitochondria", ["mitochondria"], 0.0),  # articles count for exact match
        ("mitochondrion", ["mitochondria", "Mitochondrion"], 1.0),  # best over answers
        ("", ["x"], 0.0),
    ],
)
def test_exact_match(prediction, answers, expected):
    assert exact_match(prediction, answers) == expected


def test_f1_is_bag_of_tokens_and_best_over_answers():
    # pred tokens {charles, darwin, and, wallace}, gold {charles, darwin}: p=2/4, r=1 -> 2/3
    assert f1("Charles Darwin and Wallace", ["Charles Darwin"]) == pytest.approx(2 / 3)
    assert f1("Darwin", ["Charles Darwin", "Darwin"]) == 1.0
    assert f1("the", ["a"]) == 1.0  # both normalise to nothing: SQuAD counts a match
    assert f1("cat", ["dog"]) == 0.0


def test_contains_matches_whole_words_only():
    assert contains(" It was Charles Darwin, in 1859.", ["charles darwin"]) == 1.0
    assert contains("Darwinism", ["Darwin"]) == 0.0
    assert contains("anything", ["the"]) == 0.0  # an answer that normalises to nothing
