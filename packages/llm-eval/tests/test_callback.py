from pathlib import Path

import pytest
import torch

from llm_eval import (
    InLoopEval,
    bits_per_byte,
    evaluate_lambada,
    evaluate_multiple_choice,
    load_tasks,
)

SAMPLE_EVAL = Path(__file__).parents[3] / "data" / "sample" / "eval"


def test_in_loop_eval_matches_direct_calls_and_restores_modes(byte_tok, models):
    piqa = load_tasks(SAMPLE_EVAL / "piqa.jsonl.gz")[:6]
    lambada = load_tasks(SAMPLE_EVAL / "lambada.jsonl.gz")[:6]
    texts = ["To be, or not to be, that is the question.", "Whether 'tis nobler in the mind"]
    callback = InLoopEval(
        byte_tok, texts, piqa + lambada, every=10, seq_len=32, batch_size=4, max_seq_len=512
    )
    model = models.CausalMean()
    model.train()
    model.out.eval()  # a mixed state must come back as it was

    seen_grad = []
    model.register_forward_hook(lambda *_: seen_grad.append(torch.is_grad_enabled()))
    metrics = callback(100, model)

    assert callback.every == 10
    assert model.training and model.drop.training and not model.out.training
    assert seen_grad and not any(seen_grad)
    assert set(metrics) == {
        "eval/bpb", "eval/nll_per_token",
        "eval/piqa/acc", "eval/piqa/acc_norm", "eval/piqa/acc_per_token", "eval/piqa/acc_per_byte",
        "eval/lambada/acc", "eval/lambada/bpb", "eval/lambada/nll_per_token",
    }  # fmt: skip
    assert all(isinstance(v, float) for v in metrics.values())
    direct = bits_per_byte(model, byte_tok, texts, seq_len=32)
    assert metrics["eval/bpb"] == pytest.approx(direct["bpb"], rel=1e-6)
    mc = evaluate_multiple_choice(model, byte_tok, piqa, max_seq_len=512)
    assert metrics["eval/piqa/acc_norm"] == mc["acc_norm"]
    lam = evaluate_lambada(model, byte_tok, lambada, max_seq_len=512)
    assert metrics["eval/lambada/bpb"] == pytest.approx(lam["bpb"], rel=1e-6)
    assert model.training


def test_rejects_bad_every(byte_tok):
    with pytest.raises(ValueError, match="every"):
        InLoopEval(byte_tok, ["x"], every=0, seq_len=8)


def test_in_loop_generation_and_fewshot_specs(byte_tok, models):
    """A generate-until spec and a few-shot cloze spec in the callback: the same numbers as
    the suite gives, without inference mode (the model keeps training after), modes restored."""
    from llm_eval import run_suite
    from llm_eval.task_spec import TaskSpec

    sciq = str(SAMPLE_EVAL / "sciq.jsonl.gz")
    specs = [TaskSpec(path=sciq, kind="generate", max_tokens=3),
             TaskSpec(path=sciq, num_fewshot=1)]  # fmt: skip
    callback = InLoopEval(byte_tok, every=5, seq_len=32, max_seq_len=512, specs=specs, spec_limit=3)
    model = models.TinyAttention()
    model.train()
    metrics = callback(5, model)
    assert model.training
    suite = run_suite(model, byte_tok, specs, max_seq_len=512, limit=3, progress=False)
    for name in ("exact_match", "f1", "contains"):
        assert metrics[f"eval/sciq_gen/{name}"] == suite["sciq_gen"][name]
    assert metrics["eval/sciq_1shot/acc_norm"] == suite["sciq_1shot"]["acc_norm"]
