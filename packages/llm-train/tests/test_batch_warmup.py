import pytest
import torch

from llm_train.batch_warmup import micro_batches_at
from llm_train.config import TrainConfig
from llm_train.metrics import read_metrics
from llm_train.trainer import Trainer


def test_micro_batches_ramp_with_tokens():
    # Target: 4 micro-batches of 100 tokens; ramp from 100 to 400 tokens over 1000 tokens.
    config = TrainConfig(steps=10, grad_accum_steps=4, batch_warmup_tokens=1000,
                         batch_warmup_start_tokens=100)  # fmt: skip
    # want(t) = 100 + 300 t / 1000 tokens, rounded up to whole 100-token micro-batches
    assert [micro_batches_at(t, 100, config) for t in (0, 1, 333, 334, 666, 667, 999)] == [
        1, 2, 2, 3, 3, 4, 4,
    ]  # fmt: skip
    assert micro_batches_at(1000, 100, config) == 4
    assert micro_batches_at(10**9, 100, config) == 4
    off = TrainConfig(steps=10, grad_accum_steps=4)
    assert micro_batches_at(0, 100, off) == 4
    huge_start = TrainConfig(steps=10, grad_accum_steps=4, batch_warmup_tokens=1000,
                             batch_warmup_start_tokens=10**6)  # fmt: skip
    assert micro_batches_at(0, 100, huge_start) == 4  # the start is capped at the target


def test_batch_warmup_needs_accumulation():
    with pytest.raises(ValueError, match="batch_warmup_tokens"):
        TrainConfig(steps=10, batch_warmup_tokens=100)


def _run(toy, run_dir, callbacks=()):
    # Micro-batches of 4 x 8 = 32 tokens; target 3 of them (96 tokens); ramp from 32 over 192.
    config = TrainConfig(
        steps=6, lr=1e-2, precision="fp32", log_every=1, checkpoint_every=2, grad_accum_steps=3,
        batch_warmup_tokens=192, batch_warmup_start_tokens=32, spike_k=0,
    )  # fmt: skip
    torch.manual_seed(123)
    trainer = Trainer(toy.Model(), toy.Loader(), config, run_dir, callbacks=callbacks)
    trainer.fit()
    return trainer


def test_token_counts_per_step_and_exact_resume_during_the_ramp(toy, tmp_path):
    straight = _run(toy, tmp_path / "straight")
    records = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    # tokens before each step: 0, 32, 96, 160 (< 192: ramping), then 256, 352.
    # want = 32 + 64 t / 192 -> 32, 42.7, 64, 85.3 tokens -> 1, 2, 2, 3 micro-batches.
    assert [r["micro_batches"] for r in records] == [1, 2, 2, 3, 3, 3]
    assert [r["tokens"] for r in records] == [32, 96, 160, 256, 352, 448]
    # The loader moved by exactly the 14 micro-batches taken (7 per epoch).
    assert straight.loader.state_dict() == {"epoch": 1, "position": 7}
    with pytest.raises(toy.Crash):
        _run(toy, tmp_path / "resumed", callbacks=[toy.CrashAt(3)])  # checkpoint at step 2
    resumed = _run(toy, tmp_path / "resumed")
    again = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["loss"] for r in again] == [r["loss"] for r in records]
    assert [r["micro_batches"] for r in again] == [1, 2, 2, 3, 3, 3]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_short_step_is_the_mean_over_its_own_target_tokens(toy, tmp_path):
    """The first step of the ramp takes one micro-batch: its loss is that batch's mean loss
    (over its target tokens), not a third of it as normalising by the 3-micro-batch target
    would give; a 2-micro-batch step's loss is the mean over the target tokens of both."""
    loader = toy.Loader()
    batches = [loader.batch(0, i) for i in range(3)]
    batches[2]["labels"][:, :6] = -100  # uneven target tokens: 32 and 8

    class Fixed:
        def __iter__(self):
            yield from batches

    class LossesBeforeStep2:
        every = 1

        def __init__(self):
            self.losses = None

        def __call__(self, step, model):
            if step == 1:  # the weights step 2 computes its loss with
                with torch.no_grad():
                    self.losses = [model(b["input_ids"], labels=b["labels"])["loss"].item()
                                   for b in batches[1:]]  # fmt: skip
            return {}

    config = TrainConfig(
        steps=2, lr=1e-2, precision="fp32", log_every=1, grad_accum_steps=3,
        batch_warmup_tokens=64, batch_warmup_start_tokens=1, spike_k=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = toy.Model(dropout=0.0)
    with torch.no_grad():
        first = model(batches[0]["input_ids"], labels=batches[0]["labels"])["loss"].item()
    probe = LossesBeforeStep2()
    Trainer(model, Fixed(), config, tmp_path, callbacks=[probe]).fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["micro_batches"] for r in records] == [1, 2]
    assert records[0]["loss"] == pytest.approx(first, rel=1e-6)
    a, b = probe.losses
    assert records[1]["loss"] == pytest.approx((32 * a + 8 * b) / 40, rel=1e-6)
    assert records[1]["loss"] != pytest.approx((a + b) / 2, rel=1e-3)  # not a mean of means
