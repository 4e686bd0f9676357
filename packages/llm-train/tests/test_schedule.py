import pytest
import torch

from llm_train.config import TrainConfig
from llm_train.schedule import build_scheduler, lr_at


def test_warmup_endpoints():
    config = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(4, config) == pytest.approx(0.5)
    assert lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(10, config) == pytest.approx(1.0)  # decay starts at the peak


def test_cosine_midpoint_and_end():
    config = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(60, config) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lr_at(35, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + 2**-0.5))
    assert lr_at(110, config) == pytest.approx(0.1)
    assert lr_at(500, config) == pytest.approx(0.1)


def test_linear_constant_and_wsd():
    linear = TrainConfig(steps=100, lr=2.0, schedule="linear", min_lr_ratio=0.0)
    assert [lr_at(s, linear) for s in (0, 25, 50, 100)] == pytest.approx([2.0, 1.5, 1.0, 0.0])
    constant = TrainConfig(steps=100, lr=2.0, warmup_steps=4, schedule="constant")
    assert [lr_at(s, constant) for s in (0, 3, 50, 99)] == pytest.approx([0.5, 2.0, 2.0, 2.0])
    wsd = TrainConfig(
        steps=100, lr=1.0, warmup_steps=10, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0
    )
    assert [lr_at(s, wsd) for s in (5, 10, 79, 80, 90, 100)] == pytest.approx(
        [0.6, 1.0, 1.0, 1.0, 0.5, 0.0]
    )


def test_lambda_lr_follows_lr_at():
    config = TrainConfig(steps=20, lr=0.5, warmup_steps=5)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_scheduler(optimizer, config)
    seen = []
    for _ in range(config.steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([lr_at(s, config) for s in range(config.steps)])
