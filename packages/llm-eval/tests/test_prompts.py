"""Few-shot prefixes, the MC-letter formulation and generate-until questions from task items."""

import pytest

from llm_eval.prompts import answer_prompt, fewshot_prefix, mc_letter, with_fewshot
from llm_formats.eval_items import EvalItem


def _item(i: int) -> EvalItem:
    q = f"Question: q{i}?\nAnswer:"
    return EvalItem("t", i, (q, q, q), (f" a{i}", f" b{i}", f" c{i}"), i % 3)


POOL = [_item(i) for i in range(10)]


def test_fewshot_never_uses_the_item_and_is_reproducible():
    for item in POOL:
        prefix = fewshot_prefix(item, POOL, 3, seed=1, description="D\n\n")
        shots = prefix.removeprefix("D\n\n").split("\n\n")[:-1]
        assert len(shots) == 3 and item.gold_text not in shots
        assert all(s in {p.gold_text for p in POOL} for s in shots)
        assert prefix == fewshot_prefix(item, list(reversed(POOL)), 3, seed=1, description="D\n\n")
    draws = {fewshot_prefix(POOL[0], POOL, 3, seed=s) for s in range(5)}
    assert len(draws) > 1  # the seed matters
    with pytest.raises(ValueError, match="needs 10 examples"):
        fewshot_prefix(POOL[0], POOL, 10, seed=0)


def test_with_fewshot_prefixes_every_context_the_same():
    (shot,) = with_fewshot(POOL[:1], POOL, 2, seed=0)
    prefix = fewshot_prefix(POOL[0], POOL, 2, seed=0)
    assert shot.contexts == tuple(prefix + c for c in POOL[0].contexts)
    assert shot.choices == POOL[0].choices and shot.gold == POOL[0].gold


def test_mc_letter_lists_the_choices_and_scores_letters():
    mc = mc_letter(POOL[4])
    assert mc.contexts[0] == "Question: q4?\n A. a4\n B. b4\n C. c4\nAnswer:"
    assert mc.choices == (" A", " B", " C") and mc.gold == 1
    with pytest.raises(ValueError, match="not a multiple-choice item"):
        mc_letter(EvalItem("l", 0, ("ctx",), (" x",), ("x",)))


def test_answer_prompt_of_mc_and_generation_items():
    assert answer_prompt(POOL[2]) == ("Question: q2?\nAnswer:", ("c2",))
    assert answer_prompt(EvalItem("l", 0, ("ctx",), (" x",), ("x", "y"))) == ("ctx", ("x", "y"))
