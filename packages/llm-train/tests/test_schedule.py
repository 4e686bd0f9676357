import math

import pytest
import torch

from llm_train.config import TrainConfig
from llm_train.schedule import build_scheduler, decay_start, lr_at


def test_warmup_endpoints():
    config = TrainConfig(steps=111, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(4, config) == pytest.approx(0.5)
    assert lr_at(9, config) == pytest.approx(1.0)  # warmup end: the peak
    assert lr_at(10, config) == pytest.approx(1.0)  # decay starts at the peak


def test_cosine_midpoint_and_last_update_at_the_floor():
    # 111 steps: the last update is step 110, and the decay spans steps 10..110.
    config = TrainConfig(steps=111, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(60, config) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lr_at(35, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + 2**-0.5))
    assert lr_at(110, config) == pytest.approx(0.1)  # the last update uses the floor
    assert lr_at(109, config) > 0.1
    assert lr_at(500, config) == pytest.approx(0.1)


def test_linear_constant_and_wsd():
    linear = TrainConfig(steps=101, lr=2.0, schedule="linear", min_lr_ratio=0.0)
    assert [lr_at(s, linear) for s in (0, 25, 50, 100)] == pytest.approx([2.0, 1.5, 1.0, 0.0])
    constant = TrainConfig(steps=100, lr=2.0, warmup_steps=4, schedule="constant")
    assert [lr_at(s, constant) for s in (0, 3, 50, 99)] == pytest.approx([0.5, 2.0, 2.0, 2.0])
    wsd = TrainConfig(
        steps=100, lr=1.0, warmup_steps=10, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0
    )
    # 20 decaying updates: 80..99 are below the peak, the last one (99) is at the floor.
    assert decay_start(wsd) == 79
    assert [lr_at(s, wsd) for s in (5, 10, 78, 79, 80, 89, 99)] == pytest.approx(
        [0.6, 1.0, 1.0, 1.0, 0.95, 0.5, 0.0]
    )


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd", "constant"])
def test_final_anneal_reaches_zero_at_the_last_update(schedule):
    config = TrainConfig(
        steps=100, lr=1.0, warmup_steps=10, schedule=schedule, min_lr_ratio=0.1,
        decay_fraction=0.2, anneal_fraction=0.1,
    )  # fmt: skip
    assert config.anneal_steps == 10
    floor_step = 89  # the schedule's shape ends here; 90..99 anneal
    value = 1.0 if schedule == "constant" else 0.1
    assert lr_at(floor_step, config) == pytest.approx(value)
    assert lr_at(90, config) == pytest.approx(value * 9 / 10)
    assert lr_at(95, config) == pytest.approx(value * 4 / 10)
    assert lr_at(99, config) == 0.0  # the LR of the last update, exactly
    assert lr_at(100, config) == 0.0
    assert lr_at(9, config) == pytest.approx(1.0)  # warmup end untouched
    if schedule == "wsd":  # the decay moves before the anneal: 20 steps ending at 89
        assert decay_start(config) == 69
        assert lr_at(69, config) == pytest.approx(1.0) and lr_at(70, config) < 1.0


def test_a_one_step_anneal_makes_only_the_last_update_zero():
    config = TrainConfig(steps=10, lr=1.0, schedule="linear", min_lr_ratio=0.5,
                         anneal_fraction=0.01)  # fmt: skip
    assert config.anneal_steps == 1
    assert [lr_at(s, config) for s in (0, 8, 9)] == pytest.approx([1.0, 0.5, 0.0])


def test_anneal_must_leave_the_warmup_alone():
    with pytest.raises(ValueError, match="anneal_fraction"):
        TrainConfig(steps=10, warmup_steps=8, anneal_fraction=0.3)


def test_lambda_lr_follows_lr_at_to_the_last_update():
    config = TrainConfig(steps=20, lr=0.5, warmup_steps=5, anneal_fraction=0.2)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_scheduler(optimizer, config)
    seen = []
    for _ in range(config.steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([lr_at(s, config) for s in range(config.steps)])
    assert seen[-1] == 0.0 and seen[4] == pytest.approx(0.5)
    assert all(math.isfinite(x) and x >= 0 for x in seen)
