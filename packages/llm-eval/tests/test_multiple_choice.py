import math

import pytest
import torch

from llm_eval import TaskItem, evaluate_lambada, evaluate_multiple_choice
from llm_eval.multiple_choice import build_requests, choice_records, metrics_from_records
from llm_eval.scoring import Score


def test_acc_vs_per_token_normalisation(byte_tok, models):
    logits = torch.full((257,), -10.0)
    logits[ord("a")], logits[ord("b")], logits[ord(" ")] = 3.0, 1.0, -2.0
    lp = torch.log_softmax(logits, -1)
    sp, a = lp[ord(" ")].item(), lp[ord("a")].item()
    item = TaskItem("t", 0, ("Q:", "Q:"), (" a", " aaaa"), 1)
    # Summed: " a" wins (sp + a > sp + 4a); per token/char: " aaaa" wins ((sp+4a)/5 > (sp+a)/2).
    assert sp + a > sp + 4 * a and (sp + 4 * a) / 5 > (sp + a) / 2
    result = evaluate_multiple_choice(models.Unigram(logits), byte_tok, [item], max_seq_len=16)
    hits = {k: result[k] for k in ("acc", "acc_norm", "acc_per_token", "acc_per_byte", "n")}
    assert hits == {"acc": 0.0, "acc_norm": 1.0, "acc_per_token": 1.0, "acc_per_byte": 1.0, "n": 1}


def test_four_scorings_on_known_scores():
    # " éé": 3 chars, 5 bytes; " abc": 4 chars, 4 bytes.
    item = TaskItem("t", 0, ("", ""), (" éé", " abc"), 1)
    scores = [[Score(-6.0, 2, False), Score(-7.0, 7, False)]]
    (record,) = choice_records([item], scores)
    # acc: -6 > -7 -> 0; acc_norm: -2 < -1.75 -> 1; per byte: -1.2 > -1.75 -> 0; per token: 1
    assert record["predictions"] == {"acc": 0, "acc_norm": 1, "acc_per_token": 1, "acc_per_byte": 0}
    assert record["correct"] == {"acc": 0, "acc_norm": 1, "acc_per_token": 1, "acc_per_byte": 0}
    assert (record["chars"], record["bytes"], record["tokens"]) == ([3, 4], [5, 4], [2, 7])
    assert record["loglikelihoods"] == [-6.0, -7.0]
    metrics = metrics_from_records([record], generation=False)
    assert metrics["acc_norm"] == 1.0 and metrics["n"] == 1


def test_requests_prefix_eos_and_move_trailing_space(byte_tok, bpe_tok):
    item = TaskItem("t", 0, ("the cat ",), ("sat",), 0)
    (req,) = build_requests(byte_tok, [item])[0]
    assert req.context == (256, *b"the cat") and req.continuation == tuple(b" sat")
    (req,) = build_requests(bpe_tok, [item])[0]
    whole = bpe_tok.encode_batch(["the cat sat"])[0]
    assert req.context[0] == bpe_tok.eos_id
    assert [*req.context[1:], *req.continuation] == whole
    assert bpe_tok.decode(list(req.continuation)) == " sat"


def test_lambada_greedy_accuracy_and_bpb(byte_tok, models):
    items = [
        TaskItem("lambada", 0, ("xa",), ("bc",), ("bc",)),  # a->b->c: greedy hit
        TaskItem("lambada", 1, ("xa",), ("bd",), ("bd",)),  # b->c, not d: miss
    ]
    result = evaluate_lambada(models.NextByte(), byte_tok, items, max_seq_len=8, batch_size=1)
    lse = math.log(math.exp(10) + 256)
    nll = 3 * (lse - 10) + lse
    assert result["acc"] == 0.5 and result["n"] == 2
    assert result["bpb"] == pytest.approx(nll / (math.log(2) * 4), rel=1e-6)
    assert result["nll_per_token"] == pytest.approx(nll / 4, rel=1e-6)


def test_item_kind_is_checked(byte_tok, models):
    mc = TaskItem("t", 0, ("a",), ("b",), 0)
    gen = TaskItem("lambada", 0, ("a",), ("b",), ("b",))
    with pytest.raises(ValueError, match="t/0 is not a generation"):
        evaluate_lambada(models.Uniform(257), byte_tok, [mc], max_seq_len=8)
    with pytest.raises(ValueError, match="lambada/0 is not a multiple-choice"):
        evaluate_multiple_choice(models.Uniform(257), byte_tok, [gen], max_seq_len=8)
