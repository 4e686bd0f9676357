"""tools/cost.py against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from tools import cost


def test_training_flops_6nd():
    assert cost.training_flops(1e9, 20e9) == pytest.approx(1.2e20, rel=1e-12)


def test_training_flops_with_attention_term():
    # GPT-2 124M shape: 6 * 124e6 + 12 * 12 * 768 * 1024 = 744e6 + 113_246_208 per token.
    per_token = 6 * 124e6 + 12 * 12 * 768 * 1024
    got = cost.training_flops(124e6, 1e9, n_layers=12, d_model=768, seq_len=1024)
    assert got == pytest.approx(per_token * 1e9, rel=1e-12)
    assert got == pytest.approx(8.57246208e17, rel=1e-12)


def test_attention_term_needs_all_three():
    with pytest.raises(ValueError, match="n_layers, d_model and seq_len"):
        cost.training_flops(1e9, 1e9, n_layers=12)


def test_chinchilla_tokens():
    assert cost.chinchilla_tokens(1.3e9) == pytest.approx(26e9)


def test_gpu_hours_h100():
    hours = cost.gpu_hours(1.2e20, "h100", 0.4)
    assert hours == pytest.approx(1.2e20 / (0.4 * 989e12) / 3600, rel=1e-12)
    assert hours == pytest.approx(84.26, abs=0.01)  # 303,336 s / 3600
    assert cost.wall_clock_hours(1.2e20, "H100", 0.4, 8) == pytest.approx(hours / 8)


def test_gpu_hours_a100_is_slower_by_peak_ratio():
    ratio = cost.gpu_hours(1e21, "a100", 0.5) / cost.gpu_hours(1e21, "h100", 0.5)
    assert ratio == pytest.approx(989 / 312)


@pytest.mark.parametrize("compute", [1e18, 1.2e20, 5.76e23])
def test_compute_optimal_satisfies_budget_and_is_a_minimum(compute):
    n, d = cost.compute_optimal(compute)
    assert 6 * n * d == pytest.approx(compute, rel=1e-12)
    best = cost.CHINCHILLA_FIT.loss(n, d)
    for factor in (0.9, 0.99, 1.01, 1.1, 2.0, 0.5):
        n2 = n * factor
        assert cost.CHINCHILLA_FIT.loss(n2, compute / (6 * n2)) > best


def test_compute_optimal_closed_form_by_hand():
    # a=0.34, b=0.28: G = (0.34*406.4 / (0.28*410.7))^(1/0.62); N* = G (C/6)^(0.28/0.62).
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    n, _ = cost.compute_optimal(6e20)
    assert n == pytest.approx(g * 1e20 ** (0.28 / 0.62), rel=1e-12)
    assert g == pytest.approx(1.3447, abs=1e-4)  # 1.20157 ** 1.6129


def test_fitted_loss_by_hand():
    got = cost.CHINCHILLA_FIT.loss(1e9, 20e9)
    want = 1.69 + 406.4 / 1e9**0.34 + 410.7 / 20e9**0.28
    assert got == pytest.approx(want, rel=1e-12)
    assert math.isclose(got, 2.5798, abs_tol=1e-3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cost.training_flops(-1, 1e9), "params must be a finite number > 0, got -1"),
        (lambda: cost.training_flops(1e9, 0), "tokens must be a finite number > 0, got 0"),
        (lambda: cost.gpu_hours(1e20, "b300", 0.4), "unknown gpu 'b300'"),
        (lambda: cost.gpu_hours(1e20, "h100", 1.5), "mfu must be in"),
        (lambda: cost.gpu_hours(1e20, "h100", 0), "mfu must be a finite number > 0"),
        (lambda: cost.wall_clock_hours(1e20, "h100", 0.4, 0), "gpus must be an integer > 0"),
        (lambda: cost.compute_optimal(float("nan")), "compute must be a finite number"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_peak_flops_for_device_names():
    assert cost.peak_flops_for_device("NVIDIA H100 80GB HBM3") == 989e12
    assert cost.peak_flops_for_device("NVIDIA H100 PCIe") == 756e12
    assert cost.peak_flops_for_device("NVIDIA H200") == 989e12
    assert cost.peak_flops_for_device("NVIDIA A100-SXM4-80GB") == 312e12
    assert cost.peak_flops_for_device("cpu") is None


def test_mfu_and_hfu():
    # 10k tokens/s at 1e12 FLOPs/token on one 989 TFLOP/s GPU.
    assert cost.utilization(1e4, 1e12, 989e12) == pytest.approx(1e16 / 989e12)
    assert cost.utilization(1e4, 1e12, 989e12, devices=8) == pytest.approx(1e16 / 989e12 / 8)
    assert cost.hardware_flops_per_token(6e9, activation_checkpointing=True) == pytest.approx(8e9)
    assert cost.hardware_flops_per_token(6e9, activation_checkpointing=False) == 6e9


def test_cli_table(capsys):
    argv = ["--params", "1.3e9", "--tokens", "26e9", "--gpu", "h100", "--mfu", "0.4", "--gpus", "8"]
    assert cost.main(argv) == 0
    out = capsys.readouterr().out
    assert "| training FLOPs C             | 2.028e+20 |" in out
    # 2.028e20 / (0.4 * 989e12) / 3600 = 142.4 GPU-hours; / 8 = 17.8 h.
    assert "| 142.4 |" in out
    assert "17.8 h" in out


def test_cli_rejects_unknown_gpu(capsys):
    with pytest.raises(SystemExit):
        cost.main(["--params", "1e9", "--gpu", "tpu"])
    assert "unknown gpu 'tpu'" in capsys.readouterr().err


# Published figures. Each test states where the number comes from and what it implies.


def test_chinchilla_70b_compute():
    # Hoffmann et al. (2022): Chinchilla, 70B parameters on 1.4T tokens, ~5.76e23 FLOPs (their
    # count); 6 N D gives 5.88e23, "about 5.9e23".
    c = cost.training_flops(70e9, 1.4e12)
    assert c == pytest.approx(5.88e23, rel=1e-12)
    assert c == pytest.approx(5.9e23, rel=0.01)
    assert c / 5.76e23 == pytest.approx(1.02, abs=0.01)  # within 2% of the paper's own count


@pytest.mark.parametrize(
    ("params", "hours", "want_mfu"),
    [
        # 1.5B on 200B tokens in about 4,300 A100-hours: 1.8e21 / (4300 h x 3600 x 312e12).
        (1.5e9, 4_300, 0.3727),
        # 6.7B on 200B tokens in about 22,000 A100-hours: 8.04e21 / (22000 h x 3600 x 312e12).
        (6.7e9, 22_000, 0.3254),
    ],
)
def test_mfu_implied_by_published_a100_hours(params, hours, want_mfu):
    c = cost.training_flops(params, 200e9)
    mfu = cost.implied_mfu(c, "a100", hours)
    assert mfu == pytest.approx(want_mfu, abs=5e-4)
    # and back: at that MFU the calculator gives the published hours
    assert cost.gpu_hours(c, "a100", mfu) == pytest.approx(hours, rel=1e-12)


def test_7b_on_150b_tokens_costs_order_10k_dollars():
    # Assumed: H100 SXM at $2.50 per GPU-hour (cloud on-demand, 2025-26) and MFU 0.40.
    c = cost.training_flops(7e9, 150e9)  # 6.3e21
    hours = cost.gpu_hours(c, "h100", 0.40)
    assert hours == pytest.approx(6.3e21 / (0.4 * 989e12) / 3600, rel=1e-12)  # 4,423.7
    usd = cost.dollars(hours, 2.50)
    assert usd == pytest.approx(11_059, abs=1)
    assert 5_000 < usd < 20_000  # "in the order of $10k"
    # on 64 GPUs: 69 hours, under 3 days
    assert cost.wall_clock_hours(c, "h100", 0.40, 64) / 24 == pytest.approx(2.88, abs=0.01)


def test_tokens_per_param_table():
    rows = cost.tokens_per_param_table([1e9, 70e9])
    (n, d, c, ratio), (_, _, c70, ratio70) = rows
    assert (n, d, c) == (1e9, 20e9, 1.2e20)
    assert c70 == pytest.approx(5.88e23)
    # the approach-3 fit asks for more tokens per parameter as the budget grows
    assert 20 < ratio < ratio70
    n_opt, d_opt = cost.compute_optimal(c)
    assert ratio == pytest.approx(d_opt / n_opt)


def test_data_cost():
    got = cost.data_cost({"instruction": 10_000, "preference": 20_000}, {
        "instruction": 5.0, "preference": 2.0, "conversation": 30.0})  # fmt: skip
    assert got == {"instruction": 50_000.0, "preference": 40_000.0, "total": 90_000.0}
    with pytest.raises(ValueError, match="unknown data kind 'essay'"):
        cost.data_cost({"essay": 1}, {"essay": 1.0})
    with pytest.raises(ValueError, match="no price per record given for 'conversation'"):
        cost.data_cost({"conversation": 3}, {})
    with pytest.raises(ValueError, match="instruction count must be an integer >= 0"):
        cost.data_cost({"instruction": -1}, {"instruction": 1.0})


def test_implied_mfu_and_dollars_reject_bad_input():
    with pytest.raises(ValueError, match="published_gpu_hours must be a finite number > 0"):
        cost.implied_mfu(1e21, "a100", 0)
    with pytest.raises(ValueError, match="price_per_gpu_hour must be a finite number > 0"):
        cost.dollars(10.0, -2.0)


def test_cli_commands(capsys):
    argv = ["implied-mfu", "--params", "6.7e9", "--tokens", "200e9", "--gpu", "a100"]
    assert cost.main([*argv, "--gpu-hours", "22000"]) == 0
    assert "| implied MFU                   | 0.325 |" in capsys.readouterr().out
    assert cost.main(["train", "--params", "7e9", "--tokens", "150e9", "--price", "2.5"]) == 0
    assert "| cost at $2.5/GPU-hour        | $11,059 |" in capsys.readouterr().out
    assert cost.main(["chinchilla", "--params", "70e9"]) == 0
    out = capsys.readouterr().out
    assert (
        "| 20 tokens/param N | 7e+10 |" in out and "| Chinchilla 70B (1.4T tokens) | 20.0 |" in out
    )
    assert cost.main(["data", "--conversations", "100", "--conversation-price", "25"]) == 0
    assert "| total" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cost.main(["data"])
    assert "give at least one of" in capsys.readouterr().err
