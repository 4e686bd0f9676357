"""Per-item results, standard errors, skipped items and a model that knows the answers."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from llm_eval import TaskItem, load_tasks, mean_stderr, run_suite
from llm_eval.multiple_choice import build_requests, metrics_from_records

SAMPLE_EVAL = Path(__file__).parents[3] / "data" / "sample" / "eval"


def test_stderr_is_the_closed_form_for_bernoulli_means():
    for hits in ([1, 0, 0, 1, 1], [1] * 7 + [0] * 13, [0, 1]):
        n, p = len(hits), sum(hits) / len(hits)
        assert mean_stderr(hits) == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    assert mean_stderr([1, 1, 1]) == 0.0
    assert math.isnan(mean_stderr([1]))
    records = [
        {"correct": {"acc": h}, "loglikelihood": -1.0, "tokens": 1, "bytes": 2}
        for h in [1, 0, 0, 1, 1, 0]
    ]
    metrics = metrics_from_records(records, generation=True)
    assert metrics["acc"] == 0.5 and metrics["acc_stderr"] == pytest.approx(math.sqrt(0.25 / 5))


class PlantedModel(nn.Module):
    """Knows the gold answers: after a prefix of ``[EOS] + context + gold choice`` it puts logit
    20 on the next gold token (uniform elsewhere), so only gold continuations score ~0."""

    def __init__(self, sequences: list[tuple[int, ...]], vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.next = {}
        for seq in sequences:
            for t in range(1, len(seq)):
                self.next.setdefault(seq[:t], set()).add(seq[t])
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(len(row)):
                for token in self.next.get(tuple(row[: t + 1]), ()):
                    logits[b, t, token] = 20.0
        return logits + 0 * self.dummy


def test_planted_model_that_knows_gold_scores_100_percent(byte_tok, tmp_path):
    items = []
    for task in ("arc_easy", "piqa"):
        items += load_tasks(SAMPLE_EVAL / f"{task}.jsonl.gz")[:12]
    gold = [
        (*reqs[item.gold].context, *reqs[item.gold].continuation)
        for item, reqs in zip(items, build_requests(byte_tok, items), strict=True)
    ]
    model = PlantedModel(gold, byte_tok.vocab_size)
    paths = [SAMPLE_EVAL / "arc_easy.jsonl.gz", SAMPLE_EVAL / "piqa.jsonl.gz"]
    results = run_suite(model, byte_tok, paths, max_seq_len=2048, limit=12, progress=False)
    for task in ("arc_easy", "piqa"):
        for name in ("acc", "acc_norm", "acc_per_token", "acc_per_byte"):
            assert results[task][name] == 1.0, (task, name)
        assert results[task]["acc_stderr"] == 0.0


def test_too_long_item_is_skipped_and_named_and_other_tasks_are_kept(byte_tok, models, tmp_path):
    """The sample's PIQA item 142 has a continuation longer than the model's context: it is
    skipped and named; the rest of PIQA and the other tasks are scored and written."""
    paths = [SAMPLE_EVAL / "arc_easy.jsonl.gz", SAMPLE_EVAL / "piqa.jsonl.gz"]
    long_item = next(i for i in load_tasks(paths[1]) if i.id == 142)
    limit = 512
    longest = max(len(c.encode()) + 1 for c in long_item.choices)  # + the moved space
    assert longest > limit  # the byte tokenizer's continuation does not fit either (the
    # other items' longest choice is under 400 bytes)
    out = tmp_path / "results"
    results = run_suite(
        models.Uniform(257),
        byte_tok,
        paths,
        max_seq_len=limit,
        limit=143,
        output_dir=out,
        metadata={"model": "uniform", "tokenizer": "bytes"},
        progress=False,
    )
    assert results["piqa"]["skipped"] == 1 and results["piqa"]["n"] == 142
    assert results["arc_easy"]["n"] == 143 and results["arc_easy"]["skipped"] == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["metadata"] == {"model": "uniform", "tokenizer": "bytes"}
    assert set(summary["tasks"]) == {"arc_easy", "piqa"}
    (skip,) = summary["skipped"]
    assert skip["task"] == "piqa" and skip["id"] == 142 and "max_seq_len=512" in skip["reason"]
    lines = [json.loads(x) for x in (out / "piqa.jsonl").read_text().splitlines()]
    assert len(lines) == 143 and sum("skipped" in r for r in lines) == 1
    scored = [r for r in lines if "skipped" not in r]
    # uniform logits: every choice's log-likelihood is -ln(257) per byte of its continuation
    for r in scored[:5]:
        assert r["loglikelihoods"] == pytest.approx([-math.log(257) * t for t in r["tokens"]])
        assert r["tokens"] == r["bytes"]


def test_empty_continuation_is_skipped_not_fatal(byte_tok, models):
    items = [TaskItem("t", 0, ("a",), ("",), 0), TaskItem("t", 1, ("a",), (" b",), 0)]
    from llm_eval import evaluate_multiple_choice

    result = evaluate_multiple_choice(models.Uniform(257), byte_tok, items, max_seq_len=8)
    assert result["n"] == 1 and result["skipped"] == 1
