"""tools/cost.py against numbers worked out by hand."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("cost", Path(__file__).parents[1] / "cost.py")
cost = importlib.util.module_from_spec(_spec)
sys.modules["cost"] = cost  # dataclasses look their module up while the class is built
_spec.loader.exec_module(cost)


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
