import math
from pathlib import Path

import numpy as np
import pytest

from llm_eval import load_tasks, run_suite

SAMPLE_EVAL = Path(__file__).parents[3] / "data" / "sample" / "eval"
TASKS = ("arc_easy", "hellaswag", "lambada", "piqa", "sciq")


def test_uniform_model_on_real_tasks(byte_tok, models):
    """Uniform logits + byte tokens: each choice scores -ln(257) * its bytes, so ``acc`` picks the
    shortest choice; lambada's argmax is token 0 (never a target) and its bpb is log2(257)."""
    paths = [SAMPLE_EVAL / f"{t}.jsonl.gz" for t in TASKS]
    results = run_suite(models.Uniform(257), byte_tok, paths, max_seq_len=1024, limit=30)
    assert sorted(results) == sorted(TASKS)
    for task in TASKS:
        items = load_tasks(SAMPLE_EVAL / f"{task}.jsonl.gz")[:30]
        if task == "lambada":
            assert results[task]["acc"] == 0.0
            assert results[task]["bpb"] == pytest.approx(math.log2(257), rel=1e-6)
            continue
        shortest = [np.argmin([len(c.encode()) for c in item.choices]) for item in items]
        expected = np.mean([s == item.gold for s, item in zip(shortest, items, strict=True)])
        assert results[task]["acc"] == pytest.approx(expected)
        assert results[task]["n"] == 30


def test_bpe_tokenizer_and_causal_model_end_to_end(bpe_tok, models):
    model = models.CausalMean(vocab_size=bpe_tok.vocab_size)
    results = run_suite(
        model, bpe_tok, [SAMPLE_EVAL / "hellaswag.jsonl.gz"], max_seq_len=512, limit=8
    )
    metrics = results["hellaswag"]
    names = ("acc", "acc_norm", "acc_per_token", "acc_per_byte")
    headline = ("score", "score_stderr")  # acc_norm for a cloze task
    assert set(metrics) == {*names, *(f"{n}_stderr" for n in names), "n", "skipped", *headline}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("acc", "acc_norm"))
    assert metrics["score"] == metrics["acc_norm"]
