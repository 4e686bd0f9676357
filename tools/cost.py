"""Training cost calculator: FLOPs (6ND), Chinchilla-optimal sizes, GPU-hours, days and dollars.

Run (``python -m tools.cost <command> --help`` for each):
  train        ``--params 1.3e9 --tokens 26e9 --gpu h100 --mfu 0.4 --gpus 8 --price 2.5``: FLOPs,
               GPU-hours, days on K GPUs, dollars (``train`` may be left out: ``--params ...``)
  implied-mfu  ``--params 1.5e9 --tokens 200e9 --gpu a100 --gpu-hours 4300``: the MFU a
               published GPU-hours figure implies
  chinchilla   ``--compute 5.9e23`` or ``--params 7e9``: the compute-optimal split and the
               tokens-per-parameter table
  data         ``--instruction-pairs 10000 --instruction-price 5 ...``: after-training data cost

Formulas:
  compute        C = (6 N + 12 L d T) D   (llm-foundry: 6N for the matmuls of forward + backward,
                                           12 L d T for attention scores and values; the attention
                                           term only with --layers, --d-model and --seq-len)
  Chinchilla     D = 20 N                  (Hoffmann et al. 2022, rule of thumb)
  approach 3     L(N, D) = E + A / N^a + B / D^b, minimised under C = 6 N D:
                   N* = G (C/6)^(b/(a+b)),  D* = (C/6)^(a/(a+b)) / G,  G = (a A / (b B))^(1/(a+b))
  time           GPU-seconds = C / (peak FLOP/s x MFU); wall-clock = GPU-seconds / GPUs
  implied MFU    MFU = C / (GPU-hours x 3600 x peak FLOP/s)
  dollars        GPU-hours x price per GPU-hour; data: count x price per item, per kind

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
    "data_cost",
    "dollars",
    "gpu_hours",
    "hardware_flops_per_token",
    "implied_mfu",
    "peak_flops_for_device",
    "tokens_per_param_table",
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


def dollars(gpu_hours_: float, price_per_gpu_hour: float) -> float:
    """Cost of ``gpu_hours_`` GPU-hours at ``price_per_gpu_hour`` dollars each."""
    _positive("gpu_hours", gpu_hours_)
    _positive("price_per_gpu_hour", price_per_gpu_hour)
    return gpu_hours_ * price_per_gpu_hour


def implied_mfu(compute: float, gpu: str, published_gpu_hours: float) -> float:
    """The MFU at which ``compute`` FLOPs take ``published_gpu_hours`` on ``gpu``.

    A paper that reports GPU-hours for a model and token count fixes this number; above 1 the
    figure cannot be right for that GPU (or the FLOPs are counted differently).
    """
    _positive("compute", compute)
    _positive("published_gpu_hours", published_gpu_hours)
    return compute / (published_gpu_hours * 3600.0 * _peak(gpu))


# Tokens per parameter that people train at, with who did it (for the table in ``chinchilla``).
TOKENS_PER_PARAM_EXAMPLES: tuple[tuple[str, float], ...] = (
    ("GPT-3 175B (300B tokens)", 300e9 / 175e9),
    ("Chinchilla 70B (1.4T tokens)", 1.4e12 / 70e9),
    ("Llama 2 7B (2T tokens)", 2e12 / 7e9),
    ("Llama 3 8B (15T tokens)", 15e12 / 8e9),
)


def tokens_per_param_table(
    sizes: list[float], fit: ScalingFit = CHINCHILLA_FIT
) -> list[tuple[float, float, float, float]]:
    """Per model size N: ``(N, 20 N tokens, their FLOPs 6 N D, fit's D*/N* at that compute)``.

    The last column is where the approach-3 fit puts the optimum for the same budget: the 20
    tokens/parameter rule and the parametric fit disagree, and more so as budgets grow.
    """
    rows = []
    for n in sizes:
        d = chinchilla_tokens(n)
        c = 6.0 * n * d
        n_opt, d_opt = compute_optimal(c, fit)
        rows.append((n, d, c, d_opt / n_opt))
    return rows


# After-training data: what each kind of record is.
DATA_KINDS: dict[str, str] = {
    "instruction": "instruction pairs (prompt, written answer) for supervised fine-tuning",
    "preference": "preference pairs (prompt, chosen, rejected) for DPO / reward models",
    "conversation": "multi-turn conversations written or checked by people",
}


def data_cost(counts: dict[str, int], prices: dict[str, float]) -> dict[str, float]:
    """Dollars per kind (``DATA_KINDS``) and ``"total"``: count x price per record.

    Args:
        counts: Records wanted per kind, e.g. ``{"instruction": 10_000}``.
        prices: Dollars per record for every kind in ``counts``.
    """
    out = {}
    for kind, count in counts.items():
        if kind not in DATA_KINDS:
            raise ValueError(f"unknown data kind {kind!r}; known: {sorted(DATA_KINDS)}")
        if not (isinstance(count, int) and count >= 0):
            raise ValueError(f"{kind} count must be an integer >= 0, got {count!r}")
        if kind not in prices:
            raise ValueError(f"no price per record given for {kind!r}")
        price = prices[kind]
        if not (isinstance(price, int | float) and math.isfinite(price) and price >= 0):
            raise ValueError(f"{kind} price must be a finite number >= 0, got {price!r}")
        out[kind] = count * float(price)
    out["total"] = sum(out.values())
    return out


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
    """Rows (label, value) of the ``train`` table."""
    tokens = args.tokens if args.tokens is not None else chinchilla_tokens(args.params)
    c = training_flops(
        args.params, tokens, n_layers=args.layers, d_model=args.d_model, seq_len=args.seq_len
    )
    budget = args.compute if args.compute is not None else 6.0 * args.params * tokens
    n_opt, d_opt = compute_optimal(budget)
    hours = wall_clock_hours(c, args.gpu, args.mfu, args.gpus)
    total = gpu_hours(c, args.gpu, args.mfu)
    rows = [
        ("parameters N", f"{args.params:.4g}"),
        ("tokens D", f"{tokens:.4g}"),
        ("tokens per parameter", f"{tokens / args.params:.1f}"),
        ("training FLOPs C", f"{c:.4g}"),
        ("Chinchilla tokens (20 N)", f"{chinchilla_tokens(args.params):.4g}"),
        ("compute-optimal N* (C = 6ND)", f"{n_opt:.4g}  (for C = {budget:.4g})"),
        ("compute-optimal D*", f"{d_opt:.4g}  ({d_opt / n_opt:.1f} tokens/param)"),
        ("fitted loss L(N, D)", f"{CHINCHILLA_FIT.loss(args.params, tokens):.4f}"),
        ("fitted loss L(N*, D*)", f"{CHINCHILLA_FIT.loss(n_opt, d_opt):.4f}"),
        (f"GPU-hours ({args.gpu}, MFU {args.mfu:g})", f"{total:,.1f}"),
        (f"wall-clock on {args.gpus} GPUs", f"{hours:,.1f} h = {hours / 24:,.2f} days"),
    ]
    if args.price is not None:
        rows.append((f"cost at ${args.price:g}/GPU-hour", f"${dollars(total, args.price):,.0f}"))
    return rows


def implied_report(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Rows of the ``implied-mfu`` table."""
    c = training_flops(args.params, args.tokens)
    mfu = implied_mfu(c, args.gpu, args.gpu_hours)
    return [
        ("training FLOPs C = 6 N D", f"{c:.4g}"),
        (f"published {args.gpu} GPU-hours", f"{args.gpu_hours:,.0f}"),
        (f"{args.gpu} peak FLOP/s (dense bf16)", f"{_peak(args.gpu):.4g}"),
        ("implied MFU", f"{mfu:.3f}"),
    ]


def chinchilla_report(args: argparse.Namespace) -> str:
    """The compute-optimal split for a budget and the tokens-per-parameter table."""
    if (args.compute is None) == (args.params is None):
        raise ValueError("give exactly one of --compute and --params")
    budget = args.compute if args.compute is not None else 6.0 * args.params * 20 * args.params
    n_opt, d_opt = compute_optimal(budget)
    head = format_table(
        [
            ("compute C", f"{budget:.4g}"),
            ("Chinchilla fit N*", f"{n_opt:.4g}"),
            ("Chinchilla fit D*", f"{d_opt:.4g}  ({d_opt / n_opt:.1f} tokens/param)"),
            ("20 tokens/param N", f"{math.sqrt(budget / 120.0):.4g}"),
            ("20 tokens/param D", f"{20 * math.sqrt(budget / 120.0):.4g}"),
        ]
    )
    lines = [
        "| N | D = 20 N | C = 6 N D | fit's D*/N* at that C |",
        "| --- | --- | --- | --- |",
    ]
    for n, d, c, ratio in tokens_per_param_table(args.sizes):
        lines.append(f"| {n:.3g} | {d:.3g} | {c:.3g} | {ratio:.1f} |")
    lines += ["", "| trained as | tokens per parameter |", "| --- | --- |"]
    lines += [f"| {name} | {ratio:,.1f} |" for name, ratio in TOKENS_PER_PARAM_EXAMPLES]
    return head + "\n\n" + "\n".join(lines)


def data_report(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Rows of the ``data`` table."""
    counts, prices = {}, {}
    for kind in DATA_KINDS:
        count = getattr(args, f"{kind}s")
        if count:
            counts[kind] = count
            prices[kind] = getattr(args, f"{kind}_price")
    if not counts:
        raise ValueError("give at least one of --instructions, --preferences, --conversations")
    cost = data_cost(counts, prices)
    rows = [(f"{counts[k]:,} {DATA_KINDS[k]}", f"${cost[k]:,.0f}") for k in counts]
    return rows + [("total", f"${cost['total']:,.0f}")]


def format_table(rows: list[tuple[str, str]]) -> str:
    """A two-column Markdown table."""
    width = max(len(label) for label, _ in rows)
    lines = [f"| {'quantity':<{width}} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {label:<{width}} | {value} |" for label, value in rows]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="FLOPs, GPU-hours, days and dollars of one training run")
    t.add_argument("--params", type=float, required=True, help="parameters N, e.g. 1.3e9")
    t.add_argument("--tokens", type=float, help="training tokens D (default 20 N)")
    t.add_argument("--compute", type=float, help="FLOP budget for N*, D* (default 6 N D)")
    t.add_argument("--gpu", default="h100", help=f"one of {sorted(PEAK_FLOPS)}")
    t.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation in (0, 1]")
    t.add_argument("--gpus", type=int, default=1, help="number of GPUs K")
    t.add_argument("--price", type=float, help="dollars per GPU-hour")
    t.add_argument("--layers", type=int, help="L, for the attention term")
    t.add_argument("--d-model", type=int, help="d, for the attention term")
    t.add_argument("--seq-len", type=int, help="T, for the attention term")
    m = sub.add_parser("implied-mfu", help="the MFU that a published GPU-hours figure implies")
    m.add_argument("--params", type=float, required=True)
    m.add_argument("--tokens", type=float, required=True)
    m.add_argument("--gpu", required=True, help=f"one of {sorted(PEAK_FLOPS)}")
    m.add_argument("--gpu-hours", type=float, required=True, help="the published figure")
    c = sub.add_parser("chinchilla", help="compute-optimal split and tokens-per-parameter table")
    c.add_argument("--compute", type=float, help="FLOP budget")
    c.add_argument("--params", type=float, help="or a size: budget = 6 N (20 N)")
    c.add_argument(
        "--sizes", type=float, nargs="+", default=[125e6, 350e6, 1.3e9, 7e9, 70e9],
        help="model sizes for the table",
    )  # fmt: skip
    d = sub.add_parser("data", help="after-training data: records x price per record")
    for kind in DATA_KINDS:
        d.add_argument(f"--{kind}s", type=int, default=0, help=f"number of {DATA_KINDS[kind]}")
        d.add_argument(f"--{kind}-price", type=float, default=0.0, help="dollars per record")
    return p


_REPORTS = {"train": report, "implied-mfu": implied_report, "data": data_report}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # the calculator's first form: no command means ``train``
    args = parser.parse_args(argv)
    try:
        if args.command == "chinchilla":
            print(chinchilla_report(args))
        else:
            print(format_table(_REPORTS[args.command](args)))
    except ValueError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
