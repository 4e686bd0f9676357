"""Each optimizer against float64 arithmetic written out here, and its exact resume."""

import pytest
import torch
from torch import nn

from llm_train.config import TrainConfig
from llm_train.lion import Lion
from llm_train.metrics import read_metrics
from llm_train.optimizer import build_optimizer, optimizer_state_bytes
from llm_train.trainer import Trainer

LR, BETAS, EPS, WD = 0.01, (0.9, 0.95), 1e-8, 0.1


class Tiny(nn.Module):
    """A matrix (decayed) and a bias (not decayed)."""

    def __init__(self, rows: int, cols: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(rows, cols, generator=g))
        self.b = nn.Parameter(torch.randn(cols, generator=g))


def _grads(model, steps):
    g = torch.Generator().manual_seed(1)
    return [[torch.randn(p.shape, generator=g) for p in model.parameters()] for _ in range(steps)]


def _run(optimizer, model, grads):
    """Parameters (float64 copies) after each step of ``grads``."""
    seen = []
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        seen.append([p.detach().double().clone() for p in model.parameters()])
    return seen


def _adamw_reference(model, grads, wds):
    params = [p.detach().double().clone() for p in model.parameters()]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    (b1, b2), seen = BETAS, []
    for t, step_grads in enumerate(grads, start=1):
        for i, (g, wd) in enumerate(zip(step_grads, wds, strict=True)):
            g = g.double()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            params[i] = params[i] * (1 - LR * wd) - LR * m_hat / (v_hat.sqrt() + EPS)
        seen.append([p.clone() for p in params])
    return seen


def _lion_reference(model, grads, wds, betas):
    params = [p.detach().double().clone() for p in model.parameters()]
    m = [torch.zeros_like(p) for p in params]
    (b1, b2), seen = betas, []
    for step_grads in grads:
        for i, (g, wd) in enumerate(zip(step_grads, wds, strict=True)):
            g = g.double()
            update = torch.sign(b1 * m[i] + (1 - b1) * g)
            params[i] = params[i] * (1 - LR * wd) - LR * update
            m[i] = b2 * m[i] + (1 - b2) * g
        seen.append([p.clone() for p in params])
    return seen


def _config(optimizer, **overrides):
    return TrainConfig(
        steps=3, lr=LR, betas=overrides.pop("betas", BETAS), eps=EPS, weight_decay=WD,
        optimizer=optimizer, **overrides,
    )  # fmt: skip


def test_adamw_matches_float64_reference():
    model = Tiny(4, 4)
    grads = _grads(model, 3)
    expected = _adamw_reference(model, grads, [WD, 0.0])
    seen = _run(build_optimizer(model, _config("adamw")), model, grads)
    for got, want in zip(seen, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("foreach", [True, False])
def test_lion_matches_float64_reference(foreach):
    betas = (0.9, 0.99)
    model = Tiny(4, 4)
    grads = _grads(model, 3)
    expected = _lion_reference(model, grads, [WD, 0.0], betas)
    optimizer = build_optimizer(model, _config("lion", betas=betas))
    assert isinstance(optimizer, Lion)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [WD, 0.0]
    optimizer.foreach = foreach
    seen = _run(optimizer, model, grads)
    for got, want in zip(seen, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert optimizer_state_bytes(optimizer) == (16 + 4) * 4  # one fp32 moment per value


def test_adamw8bit_matches_reference_up_to_its_quantization(eager_torchao):
    model = Tiny(64, 64)  # 4096 values: the smallest matrix torchao keeps in 8 bits
    grads = _grads(model, 3)
    expected = _adamw_reference(model, grads, [WD, 0.0])
    optimizer = build_optimizer(model, _config("adamw8bit"))
    seen = _run(optimizer, model, grads)
    state = optimizer.state[model.w]["exp_avg"]
    assert type(state).__name__ == "OptimState8bit" and state.codes.dtype == torch.uint8
    # Step 1 computes with the new moments in fp32 before storing them: AdamW's result.
    for a, b in zip(seen[0], expected[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # Later steps start from the 8-bit stored moments: each update (at most ~LR per value)
    # moves off the exact one by a fraction of LR, never by a whole update.
    for got, want in zip(seen[1:], expected[1:], strict=True):
        error = (got[0] - want[0]).abs()
        assert 0 < error.max() < 0.2 * LR
        torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6)  # 1-D: fp32 moments
    # Two 8-bit moments of 4096 values, one fp32 scale per 256 and a 256-entry code book each,
    # and fp32 moments for the 64-value bias; the step counters (0-dim) add 4 bytes each.
    quantized = 2 * (4096 + 16 * 4 + 256 * 4)
    assert optimizer_state_bytes(optimizer) == quantized + 2 * 64 * 4 + 2 * 4


def test_adamw8bit_without_torchao_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError("No module named 'torchao'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with pytest.raises(ImportError, match=r"llm-train\[ao\]"):
        build_optimizer(Tiny(2, 2), _config("adamw8bit"))


def test_unknown_optimizer_is_a_config_error():
    with pytest.raises(ValueError, match="TrainConfig.optimizer='sgd'"):
        _config("sgd")


@pytest.mark.trains
@pytest.mark.parametrize("optimizer", ["lion", "adamw8bit"])
def test_exact_resume(toy, tmp_path, optimizer, request):
    if optimizer == "adamw8bit":
        request.getfixturevalue("eager_torchao")
    config = TrainConfig(
        steps=6, lr=1e-2, warmup_steps=1, precision="fp32", log_every=1, checkpoint_every=3,
        grad_accum_steps=2, optimizer=optimizer, anneal_fraction=0.3, spike_k=0,
    )  # fmt: skip

    def run(run_dir, callbacks=()):
        torch.manual_seed(123)
        model = toy.Model(hidden=256)  # 4096-value matrices: 8-bit states under adamw8bit
        trainer = Trainer(model, toy.Loader(), config, run_dir, callbacks=callbacks)
        trainer.fit()
        return trainer

    straight = run(tmp_path / "straight")
    with pytest.raises(toy.Crash):
        run(tmp_path / "resumed", callbacks=[toy.CrashAt(5)])
    resumed = run(tmp_path / "resumed")
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    want = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    got = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
    assert [r["lr"] for r in got] == [r["lr"] for r in want] and want[-1]["lr"] == 0.0
    assert want[-1]["loss"] < want[0]["loss"]
    if optimizer == "adamw8bit":  # the quantized states came back from DCP as such
        w1 = resumed.model.blocks[0].w1.weight
        assert type(resumed.optimizer.state[w1]["exp_avg"]).__name__ == "OptimState8bit"
