import math

import pytest
import torch

from llm_train.config import TrainConfig
from llm_train.guard import SpikeGuard
from llm_train.optimizer import build_optimizer
from llm_train.schedule import build_scheduler
from llm_train.step import finite, to_floats, train_step


def _setup(toy, **overrides):
    torch.manual_seed(0)
    model = toy.Model(dropout=0.0)
    config = TrainConfig(steps=10, lr=1e-2, precision="fp32", spike_k=0, **overrides)
    optimizer = build_optimizer(model, config)
    return model, optimizer, build_scheduler(optimizer, config), config


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_step_returns_loss_parts_and_updates(toy):
    model, optimizer, scheduler, config = _setup(toy, grad_clip=0.5)
    batch = toy.Loader().batch(0, 0)
    before = _params(model)
    metrics = to_floats(train_step(model, [batch], optimizer, scheduler, config))
    assert set(metrics) == {
        "loss", "ce", "z_loss", "grad_norm", "lr", "skipped", "skipped_nan", "skipped_spike",
    }  # fmt: skip
    assert metrics["loss"] == pytest.approx(metrics["ce"] + metrics["z_loss"], rel=1e-6)
    assert metrics["ce"] == pytest.approx(math.log(toy.vocab), abs=0.5)  # near-uniform at init
    assert metrics["lr"] == pytest.approx(1e-2) and metrics["skipped"] == 0.0
    assert metrics["grad_norm"] > 0.5  # reported before clipping
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scheduler.last_epoch == 1


def test_grad_accumulation_matches_one_big_batch(toy):
    loader = toy.Loader(batch_size=2)
    micro = [loader.batch(0, 0), loader.batch(0, 1)]
    big = {k: torch.cat([m[k] for m in micro]) for k in micro[0]}
    model_a, opt_a, sched_a, config = _setup(toy, grad_accum_steps=2)
    model_b, opt_b, sched_b, _ = _setup(toy)
    metrics_a = to_floats(train_step(model_a, micro, opt_a, sched_a, config))
    metrics_b = to_floats(train_step(model_b, [big], opt_b, sched_b, config))
    assert metrics_a["loss"] == pytest.approx(metrics_b["loss"], rel=1e-6)
    assert metrics_a["grad_norm"] == pytest.approx(metrics_b["grad_norm"], rel=1e-5)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def test_micro_batches_are_weighted_by_their_target_tokens(toy):
    loader = toy.Loader(batch_size=2)
    micro = [loader.batch(0, 0), loader.batch(0, 1)]
    micro[0]["labels"][:, 1:] = -100  # 2 target tokens against 16: a mean of means is off
    micro[1]["labels"][1, :3] = -100
    big = {k: torch.cat([m[k] for m in micro]) for k in micro[0]}
    model_a, opt_a, sched_a, config = _setup(toy, grad_accum_steps=2, grad_clip=0.0)
    model_b, opt_b, sched_b, _ = _setup(toy, grad_clip=0.0)
    metrics_a = to_floats(train_step(model_a, micro, opt_a, sched_a, config))
    metrics_b = to_floats(train_step(model_b, [big], opt_b, sched_b, config))
    for key in ("loss", "ce", "z_loss", "grad_norm"):
        assert metrics_a[key] == pytest.approx(metrics_b[key], rel=1e-5), key
    grads_b = _grads(model_b)
    for name, grad in _grads(model_a).items():
        torch.testing.assert_close(grad, grads_b[name], rtol=1e-5, atol=1e-7)


def test_micro_batch_without_target_tokens_adds_nothing(toy):
    loader = toy.Loader(batch_size=2)
    micro = [loader.batch(0, 0), loader.batch(0, 1)]
    micro[0]["labels"][:] = -100  # its own mean is 0/0 = NaN
    model_a, opt_a, sched_a, config = _setup(toy, grad_accum_steps=2, grad_clip=0.0)
    model_b, opt_b, sched_b, _ = _setup(toy, grad_clip=0.0)
    metrics_a = to_floats(train_step(model_a, micro, opt_a, sched_a, config))
    metrics_b = to_floats(train_step(model_b, micro[1:], opt_b, sched_b, config))
    assert metrics_a["skipped"] == 0.0
    assert metrics_a["loss"] == pytest.approx(metrics_b["loss"], rel=1e-6)
    grads_b = _grads(model_b)
    for name, grad in _grads(model_a).items():
        torch.testing.assert_close(grad, grads_b[name], rtol=1e-5, atol=1e-7)


def test_no_host_sync_without_guard_under_stop_policy(toy, host_reads):
    model, optimizer, scheduler, config = _setup(toy, nan_policy="stop")
    batch = toy.Loader().batch(0, 0)
    calls = host_reads
    metrics = train_step(model, [batch], optimizer, scheduler, config, sync=False)
    assert calls == []
    assert bool(finite(metrics))
    train_step(model, [batch], optimizer, scheduler, config, sync=True)
    assert calls  # the check this test relies on does see a read


def _poison(model):
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")


def test_nan_loss_is_skipped(toy):
    model, optimizer, scheduler, config = _setup(toy, nan_policy="skip")
    _poison(model)
    before = _params(model)
    metrics = to_floats(train_step(model, [toy.Loader().batch(0, 0)], optimizer, scheduler, config))
    assert math.isnan(metrics["loss"])
    assert metrics["skipped"] == 1.0 and metrics["skipped_nan"] == 1.0
    for a, b in zip(before, model.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0, equal_nan=True)
    assert not optimizer.state  # AdamW never stepped
    assert scheduler.last_epoch == 1  # the schedule still advances


def test_nan_loss_stops_under_stop_policy(toy):
    model, optimizer, scheduler, config = _setup(toy, nan_policy="stop")
    _poison(model)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train_step(model, [toy.Loader().batch(0, 0)], optimizer, scheduler, config)


def test_spike_is_skipped_and_window_not_polluted(toy):
    model, optimizer, scheduler, config = _setup(toy)
    guard = SpikeGuard(k=3.0, window=4)
    for loss in (2.0, 2.1, 1.9, 2.0):
        guard.accept(loss)
    batch = toy.Loader().batch(0, 0)  # loss ~3.47 at init > 2.0 + 3 * 0.08
    before = _params(model)
    metrics = train_step(model, [batch], optimizer, scheduler, config, guard=guard)
    assert metrics["skipped_spike"] == 1.0 and metrics["skipped_nan"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert list(guard.losses) == [2.0, 2.1, 1.9, 2.0]


def test_spike_guard_threshold():
    guard = SpikeGuard(k=2.0, window=3)
    assert not guard.is_spike(100.0)  # silent until the window is full
    for loss in (1.0, 2.0, 3.0):  # mean 2, sample std 1
        guard.accept(loss)
    assert not guard.is_spike(4.0)
    assert guard.is_spike(4.01)
    state = guard.state_dict()
    other = SpikeGuard(k=2.0, window=3)
    other.load_state_dict(state)
    assert other.is_spike(4.01) and list(other.losses) == [1.0, 2.0, 3.0]
    assert not SpikeGuard(k=0.0, window=2).is_spike(1e9)
