"""tools/ladder: the power-law fit on exact data, and a tiny real ladder on the shipped
Shakespeare text whose fit predicts the next size's held-out loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tools.ladder import ladder
from tools.ladder.fit import fit_power_law

BOOKS = Path(__file__).resolve().parents[2] / "data/sample/books/shakespeare.jsonl.gz"


def test_fit_recovers_an_exact_power_law():
    xs = [1e3, 1e4, 1e5, 1e6]
    law = fit_power_law(xs, [5.0 * x**-0.2 for x in xs])
    assert law.a == pytest.approx(5.0) and law.b == pytest.approx(0.2)
    assert law(1e7) == pytest.approx(5.0 * 1e7**-0.2)
    low, high = law.interval(1e7)  # no scatter: the interval closes on the line
    assert low == pytest.approx(high, rel=1e-6)


def test_interval_widens_away_from_the_data_and_with_few_points():
    xs = [1.0, 2.0, 4.0, 8.0, 16.0]
    ys = [3.0 * x**-0.3 * f for x, f in zip(xs, [1.02, 0.98, 1.01, 0.99, 1.0], strict=True)]
    law = fit_power_law(xs, ys)
    near, far = law.interval(4.0), law.interval(1e4)
    assert near[0] < law(4.0) < near[1]
    assert (far[1] / far[0]) > (near[1] / near[0])
    three = fit_power_law(xs[:3], ys[:3])  # t(0.975, 1) = 12.7: much wider
    assert three.interval(32.0)[1] / three.interval(32.0)[0] > far[1] / far[0] / 10
    by_hand_t = 3.182  # 3 degrees of freedom
    lx = [math.log(x) for x in xs]
    mean = sum(lx) / 5
    sxx = sum((v - mean) ** 2 for v in lx)
    half = by_hand_t * law.s * math.sqrt(1 + 1 / 5 + (math.log(32.0) - mean) ** 2 / sxx)
    assert law.interval(32.0)[1] == pytest.approx(law(32.0) * math.exp(half))


@pytest.mark.parametrize(
    ("xs", "ys", "message"),
    [([1.0], [1.0], "needs >= 2 points"), ([1.0, 2.0], [1.0, 0.0], "finite values > 0"),
     ([2.0, 2.0], [1.0, 0.5], "all x values are equal"), ([1.0, 2.0], [1.0], "differ in length")],
)  # fmt: skip
def test_fit_rejects_bad_input(xs, ys, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(xs, ys)


def test_ladder_config_is_validated():
    with pytest.raises(ValueError, match="LadderConfig.target=48 must exceed the widest rung"):
        ladder.LadderConfig(widths=[16, 32, 48], target=48)
    with pytest.raises(ValueError, match="multiples of 16"):
        ladder.LadderConfig(widths=[16, 24], target=64)


# Three rungs fitted, the fourth predicted, with the ladder's defaults (batch 4 x 32 tokens, one
# token per non-embedding parameter; about 12 s on the one thread the ladder uses).
#
# Tiny-model training is chaotic: another CPU's matmul kernels move each rung's loss as much as
# another seed does. Measured on one 2-core Xeon (AVX-512), seeds 0-9 x 3 kernel sets
# (ATEN_CPU_CAPABILITY native, default, avx2; 30 ladders): the compute law's prediction error
# (predicted - measured) / measured had mean +5.1% and standard deviation 6.1% (range -3.9% ..
# +24.8%; an AMD EPYC gave +6.0% for seed 0), the middle rung was once worse than the largest
# (3.017 vs 3.098 nats), the fitted exponent ranged 0.022 .. 0.073, every measurement lay inside
# its 95% interval (30 of 30: with 3 rungs the interval uses t(0.975, 1) = 12.7 and is wide), and
# every loss was below 3.34 nats against 5.5 for the untrained model. So the test asserts that
# (exact budgets, exact fits, learning, the interval) and an error bound of mean + 4 sd = 30%: it
# catches a fit or budget that is wrong, not a few points of a tiny run's luck.
STEPS = [53, 209, 434]  # round(N / (4 x 32)) for N = 6,736, 26,784, 55,536 non-embedding params
TARGET_STEPS = 786
ERROR_BOUND = 0.30


@pytest.mark.trains
def test_tiny_ladder_predicts_the_next_size(tmp_path):
    config = ladder.LadderConfig(widths=[16, 32, 48], target=64, eval_batches=4)
    data = ladder.ByteText([BOOKS])
    result = ladder.run_ladder(config, data, check_target=True)
    rungs, target = result.rungs, result.target
    assert [r.steps for r in rungs] == STEPS and target.steps == TARGET_STEPS
    assert [r.tokens for r in rungs] == [s * 4 * 32 for s in STEPS]
    losses = [r.eval_loss for r in rungs]
    untrained = _untrained_loss(config, data)
    assert max(*losses, target.eval_loss) < untrained - 1.0, (losses, untrained)  # each learned
    assert losses[-1] < losses[0]  # the largest rung beats the smallest (by >= 0.23 in 30 runs)
    assert result.by_compute.b > 0 and result.by_params.b > 0
    # The fits and predictions are exactly the law's arithmetic on the measured losses.
    assert result.by_compute == fit_power_law([r.compute for r in rungs], losses)
    by_c = result.predictions[0]
    assert by_c.loss == result.by_compute(by_c.x) and by_c.measured == target.eval_loss
    assert by_c.low < by_c.loss < by_c.high
    report = ladder.markdown(result, [])
    assert by_c.low <= by_c.measured <= by_c.high, report
    assert abs(by_c.loss - by_c.measured) / by_c.measured < ERROR_BOUND, report
    ladder.write(result, [("date", "today"), ("data", data.name)], tmp_path)
    md = (tmp_path / "ladder.md").read_text()
    assert "| 64 (target) |" in md and "loss ~ a C^-b" in md
    assert (tmp_path / "ladder.png").stat().st_size > 0


def _untrained_loss(config, data) -> float:
    """Held-out loss of the smallest rung as initialised: what training must improve on."""
    torch.manual_seed(config.seed)
    model = ladder.Transformer(ladder.rung_config(16, data.vocab_size, config.seq_len))
    batches = data.heldout(config.batch_size, config.seq_len, config.eval_batches)
    return ladder.evaluate(model, batches)


@pytest.mark.trains
def test_ladder_is_reproducible_on_one_machine():
    # The comparison that holds on any machine: the same config twice, the same losses, bit for bit.
    config = ladder.LadderConfig(widths=[16, 32], target=48, eval_batches=2)
    data = ladder.ByteText([BOOKS])
    first, second = (ladder.run_ladder(config, data) for _ in range(2))
    assert [r.eval_loss for r in first.rungs] == [r.eval_loss for r in second.rungs]
    assert [r.train_loss for r in first.rungs] == [r.train_loss for r in second.rungs]
