"""Scoring generated answers: exact match, F1 and contains, after lm-evaluation-harness's
normalisations.

- ``exact_match``: the harness's ``exact_match`` metric (HF evaluate's) with
  ``ignore_case=True, ignore_punctuation=True`` as its generate-until QA tasks set it (TriviaQA,
  NQ-Open), after its ``remove_whitespace`` filter; surrounding whitespace is stripped.
- ``f1`` and ``contains``: the SQuAD answer normalisation the harness's SQuAD and DROP tasks use
  (lower case, punctuation and the articles a/an/the removed, whitespace collapsed); ``f1`` is
  the bag-of-tokens F1, ``contains`` whether the normalised answer occurs in the normalised
  generation as whole words.

Each takes the best over the accepted answers, as the harness does.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

__all__ = ["ANSWER_METRICS", "contains", "exact_match", "f1", "normalize_answer"]

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _exact(prediction: str, answer: str) -> bool:
    def norm(s: str) -> str:
        return s.lower().translate(_PUNCTUATION).strip()

    return norm(prediction) == norm(answer)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals an answer, ignoring case, punctuation and outer spaces."""
    return float(any(_exact(prediction, a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:  # SQuAD: both empty is a match, one empty is not
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, answers: Sequence[str]) -> float:
    """Best bag-of-tokens F1 against the answers (SQuAD normalisation)."""
    return max(_f1(prediction, a) for a in answers)


def contains(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a (non-empty) normalised answer occurs in the normalised prediction as whole
    words."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(g and f" {g} " in pred for g in map(normalize_answer, answers)))


ANSWER_METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "exact_match": exact_match,
    "f1": f1,
    "contains": contains,
}
