"""Training cost calculator: FLOPs (6ND), Chinchilla-optimal sizes, GPU-hours and wall-clock.

Run: ``python tools/cost.py --params 1.3e9 --tokens 26e9 --gpu h100 --mfu 0.4 --gpus 8``.

Formulas:
  compute        C = (6 N + 12 L d T) D   (llm-foundry: 6N for the matmuls of forward + backward,
                                           12 L d T for attention scores and values; the attention
                                           term only with --layers, --d-model and --seq-len)
  Chinchilla     D = 20 N                  (Hoffmann et al. 2022, rule of thumb)
  approach 3     L(N, D) = E + A / N^a + B / D^b, minimised under C = 6 N D:
                   N* = G (C/6)^(b/(a+b)),  D* = (C/6)^(a/(a+b)) / G,  G = (a A / (b B))^(1/(a+b))
  time           GPU-seconds = C / (peak FLOP/s x MFU); wall-clock = GPU-seconds / GPUs

Standard library only, so it runs anywhere in a checkout (the peak table is read from
``packages/llm-train/src/llm_train/hardware.py``). ``PEAK_FLOPS``, ``peak_flops_for_device`` and
``utilization`` are also used by ``benchmarks/throughput/bench_throughput.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CHINCHILLA_FIT",
    "PEAK_FLOPS",
    "ScalingFit",
    "chinchilla_tokens",
    "compute_optimal",
    "gpu_hours",
    "hardware_flops_per_token",
    "peak_flops_for_device",
    "training_flops",
    "utilization",
    "wall_clock_hours",
]


def _load_hardware():
    """llm-train's table of peak FLOP/s, the one the trainer logs MFU with. The file is read
    directly: it needs only the standard library, and importing ``llm_train`` would need torch."""
    path = Path(__file__).resolve().parents[1] / "packages/llm-train/src/llm_train/hardware.py"
    spec = importlib.util.spec_from_file_location("_llm_train_hardware", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_HARDWARE = _load_hardware()
# Dense bf16 tensor-core peak per GPU (no 2:4 sparsity), from the vendor data sheets.
PEAK_FLOPS: dict[str, float] = _HARDWARE.PEAK_FLOPS
TOKENS_PER_PARAM = 20.0


@dataclass(frozen=True, kw_only=True)
class ScalingFit:
    """Parametric loss fit ``L(N, D) = E + A / N^alpha + B / D^beta``."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, params: float, tokens: float) -> float:
        """Fitted loss (nats/token) of ``params`` parameters trained on ``tokens`` tokens."""
        _positive("params", params)
        _positive("tokens", tokens)
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta


# Hoffmann et al. (2022), approach 3.
CHINCHILLA_FIT = ScalingFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def training_flops(
    params: float,
    tokens: float,
    *,
    n_layers: int | None = None,
    d_model: int | None = None,
    seq_len: int | None = None,
) -> float:
    """Training compute ``(6 N + 12 L d T) D`` in FLOPs.

    Args:
        params: N, parameters.
        tokens: D, training tokens.
        n_layers, d_model, seq_len: L, d, T for the attention term; all three or none.
    """
    _positive("params", params)
    _positive("tokens", tokens)
    attn = (n_layers, d_model, seq_len)
    if all(v is None for v in attn):
        return 6.0 * params * tokens
    if any(v is None for v in attn):
        raise ValueError("attention term needs all of n_layers, d_model and seq_len, or none")
    for name, value in zip(("n_layers", "d_model", "seq_len"), attn, strict=True):
        _positive(name, value)
    return (6.0 * params + 12.0 * n_layers * d_model * seq_len) * tokens


def chinchilla_tokens(params: float) -> float:
    """Chinchilla rule of thumb: ``20 N`` tokens."""
    _positive("params", params)
    return TOKENS_PER_PARAM * params


def compute_optimal(compute: float, fit: ScalingFit = CHINCHILLA_FIT) -> tuple[float, float]:
    """``(N*, D*)`` minimising ``fit.loss`` under ``6 N D = compute`` (closed form).

    Args:
        compute: C, training FLOPs.
        fit: Loss fit; Hoffmann et al. approach 3 by default.
    """
    _positive("compute", compute)
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1.0 / (a + b))
    budget = compute / 6.0
    params = g * budget ** (b / (a + b))
    return params, budget / params


def _peak(gpu: str) -> float:
    key = gpu.lower()
    if key not in PEAK_FLOPS:
        raise ValueError(f"unknown gpu {gpu!r}; known: {sorted(PEAK_FLOPS)}")
    return PEAK_FLOPS[key]


def gpu_hours(compute: float, gpu: str, mfu: float) -> float:
    """GPU-hours to spend ``compute`` FLOPs on ``gpu`` at model FLOPs utilisation ``mfu``."""
    _positive("compute", compute)
    _positive("mfu", mfu)
    if mfu > 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu!r}")
    return compute / (mfu * _peak(gpu)) / 3600.0


def wall_clock_hours(compute: float, gpu: str, mfu: float, gpus: int) -> float:
    """Hours on ``gpus`` GPUs (perfect scaling: MFU already includes communication losses)."""
    if not (isinstance(gpus, int) and gpus > 0):
        raise ValueError(f"gpus must be an integer > 0, got {gpus!r}")
    return gpu_hours(compute, gpu, mfu) / gpus


def peak_flops_for_device(name: str) -> float | None:
    """Peak dense bf16 FLOP/s for a device name such as ``torch.cuda.get_device_name()``.

    Returns None when the device is not in ``PEAK_FLOPS`` (a CPU, an unlisted GPU).
    """
    return _HARDWARE.peak_flops_for_device(name) or None


def hardware_flops_per_token(model_flops: float, activation_checkpointing: bool) -> float:
    """FLOPs the hardware runs per token: activation checkpointing repeats the forward (8N, not 6N).

    As in llm-foundry, the whole count (attention term included) is scaled by 4/3.
    """
    _positive("model_flops", model_flops)
    return model_flops * 4.0 / 3.0 if activation_checkpointing else model_flops


def utilization(tokens_per_s: float, flops_per_token: float, peak_flops: float, devices: int = 1):
    """Fraction of the peak achieved: ``tokens/s x FLOPs/token / (devices x peak)``.

    Pass model FLOPs for MFU and ``hardware_flops_per_token`` for HFU.
    """
    _positive("tokens_per_s", tokens_per_s)
    _positive("flops_per_token", flops_per_token)
    _positive("peak_flops", peak_flops)
    return tokens_per_s * flops_per_token / (devices * peak_flops)


def report(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Rows (label, value) of the CLI table."""
    tokens = args.tokens if args.tokens is not None else chinchilla_tokens(args.params)
    c = training_flops(
        args.params, tokens, n_layers=args.layers, d_model=args.d_model, seq_len=args.seq_len
    )
    budget = args.compute if args.compute is not None else 6.0 * args.params * tokens
    n_opt, d_opt = compute_optimal(budget)
    hours = wall_clock_hours(c, args.gpu, args.mfu, args.gpus)
    return [
        ("parameters N", f"{args.params:.4g}"),
        ("tokens D", f"{tokens:.4g}"),
        ("tokens per parameter", f"{tokens / args.params:.1f}"),
        ("training FLOPs C", f"{c:.4g}"),
        ("Chinchilla tokens (20 N)", f"{chinchilla_tokens(args.params):.4g}"),
        ("compute-optimal N* (C = 6ND)", f"{n_opt:.4g}  (for C = {budget:.4g})"),
        ("compute-optimal D*", f"{d_opt:.4g}  ({d_opt / n_opt:.1f} tokens/param)"),
        ("fitted loss L(N, D)", f"{CHINCHILLA_FIT.loss(args.params, tokens):.4f}"),
        ("fitted loss L(N*, D*)", f"{CHINCHILLA_FIT.loss(n_opt, d_opt):.4f}"),
        (f"GPU-hours ({args.gpu}, MFU {args.mfu:g})", f"{gpu_hours(c, args.gpu, args.mfu):,.1f}"),
        (f"wall-clock on {args.gpus} GPUs", f"{hours:,.1f} h = {hours / 24:,.2f} days"),
    ]


def format_table(rows: list[tuple[str, str]]) -> str:
    """A two-column Markdown table."""
    width = max(len(label) for label, _ in rows)
    lines = [f"| {'quantity':<{width}} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {label:<{width}} | {value} |" for label, value in rows]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=float, required=True, help="parameters N, e.g. 1.3e9")
    p.add_argument("--tokens", type=float, help="training tokens D (default 20 N)")
    p.add_argument("--compute", type=float, help="FLOP budget for N*, D* (default 6 N D)")
    p.add_argument("--gpu", default="h100", help=f"one of {sorted(PEAK_FLOPS)}")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation in (0, 1]")
    p.add_argument("--gpus", type=int, default=1, help="number of GPUs")
    p.add_argument("--layers", type=int, help="L, for the attention term")
    p.add_argument("--d-model", type=int, help="d, for the attention term")
    p.add_argument("--seq-len", type=int, help="T, for the attention term")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        rows = report(args)
    except ValueError as e:
        parser.error(str(e))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
