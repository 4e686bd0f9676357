"""Microbenchmarks of llm-kernels on one CUDA GPU: time, GB/s, ratio to a device copy, peak memory.

Run: ``uv run python benchmarks/kernels/bench_kernels.py [--ops rms_norm swiglu ...] [--quick]``.
Writes ``benchmarks/results/kernels.{md,csv,png}``. Every op is timed forward ("fwd") and forward
+ backward ("fwd+bwd") with ``triton.testing.do_bench`` (median ms) against eager torch, the
torch built-in where one exists (``F.rms_norm``), ``torch.compile`` of the eager code, and
Liger-Kernel when it is importable. Inputs are bf16.

Bytes that must move (e = 2 bytes per bf16 element; small vectors such as weights, rstd and the
cos/sin tables are ignored):
  rms_norm           fwd: read x, write y = 2 M N e
                     fwd+bwd: + read x, dy, write dx = 5 M N e
  rms_norm_residual  fwd: read x, r, write y, s = 4 M N e
                     fwd+bwd: + read s, dy, ds, write dx = 8 M N e
  swiglu             fwd: read g, u, write o = 3 M N e
                     fwd+bwd: + read do, g, u, write dg, du = 8 M N e
  rope               fwd: read q, k, write q, k = 2 (Q+K) e;  fwd+bwd: 4 (Q+K) e
  linear_ce          compute bound: TFLOP/s (2 N d V fwd, 6 N d V fwd+bwd), no GB/s
"copy ratio" = achieved GB/s / GB/s of ``dst.copy_(src)`` on a tensor of the op's size.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import llm_kernels
from llm_kernels import reference

log = logging.getLogger("bench_kernels")
RESULTS = Path(__file__).resolve().parents[1] / "results"
DTYPE = torch.bfloat16
E = 2  # bytes per bf16 element

RMS_SHAPES = [(4096, 2048), (16384, 4096), (32768, 8192)]
SWIGLU_SHAPES = [(16384, 11008), (32768, 14336)]
ROPE_SHAPE = (8, 2048, 32, 128)  # B, T, H, D
CE_SHAPE = (16384, 4096, 128256)  # tokens, hidden, vocab


@dataclass
class Row:
    op: str
    shape: str
    provider: str
    mode: str
    ms: float
    gb_s: float | None
    copy_ratio: float | None
    tflop_s: float | None
    peak_mib: float


@dataclass
class Case:
    op: str
    shape: str
    inputs: list[torch.Tensor]  # floating inputs get requires_grad for fwd+bwd
    providers: dict[str, Callable]
    bytes_fwd: float | None
    bytes_fwd_bwd: float | None
    flops: tuple[float, float] | None = None  # (fwd, fwd+bwd)


def _liger(name: str):
    """Liger-Kernel callables, or None when it is not installed (or its API moved)."""
    try:
        if name == "rms_norm":
            from liger_kernel.transformers import LigerRMSNorm

            return LigerRMSNorm
        if name == "swiglu":
            from liger_kernel.ops.swiglu import LigerSiLUMulFunction

            return LigerSiLUMulFunction.apply
        if name == "rope":
            from liger_kernel.transformers import liger_rotary_pos_emb

            return liger_rotary_pos_emb
        if name == "linear_ce":
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            return LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    return None


def _eager_rms(x, w, eps=1e-6):  # Hugging Face Llama's RMSNorm
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _with_compile_and_liger(providers: dict, eager: Callable, liger: Callable | None) -> dict:
    providers["torch.compile"] = torch.compile(eager)
    if liger is not None:
        providers["liger"] = liger
    return providers


def rms_cases(shapes) -> list[Case]:
    cases = []
    for m, n in shapes:
        x, w, r = (torch.randn(m, n, dtype=DTYPE, device="cuda"), torch.rand(n, dtype=DTYPE,
                   device="cuda"), torch.randn(m, n, dtype=DTYPE, device="cuda"))  # fmt: skip
        providers = {
            "llm_kernels": llm_kernels.rms_norm,
            "eager": _eager_rms,
            "F.rms_norm": lambda x, w: F.rms_norm(x, (x.shape[-1],), w, 1e-6),
        }
        liger = _liger("rms_norm")
        if liger is not None:
            mod = liger(n, eps=1e-6).to("cuda", DTYPE)
            liger = lambda x, w, mod=mod: mod(x)  # noqa: E731 (its own weight; same shape)
        _with_compile_and_liger(providers, _eager_rms, liger)
        cases.append(Case("rms_norm", f"{m}x{n}", [x, w], providers, 2 * m * n * E, 5 * m * n * E))

        def eager_res(x, r, w):
            s = x + r
            return _eager_rms(s, w), s

        res = {"llm_kernels": llm_kernels.rms_norm_residual, "eager": eager_res}
        _with_compile_and_liger(res, eager_res, None)
        cases.append(Case("rms_norm_residual", f"{m}x{n}", [x, r, w], res, 4 * m * n * E,
                          8 * m * n * E))  # fmt: skip
    return cases


def swiglu_cases(shapes) -> list[Case]:
    cases = []
    for m, n in shapes:
        g, u = (torch.randn(m, n, dtype=DTYPE, device="cuda") for _ in range(2))
        eager = lambda g, u: F.silu(g) * u  # noqa: E731
        providers = {"llm_kernels": llm_kernels.swiglu, "eager": eager}
        _with_compile_and_liger(providers, eager, _liger("swiglu"))
        cases.append(Case("swiglu", f"{m}x{n}", [g, u], providers, 3 * m * n * E, 8 * m * n * E))
    return cases


def rope_cases() -> list[Case]:
    b, t, h, d = ROPE_SHAPE
    q, k = (torch.randn(b, t, h, d, dtype=DTYPE, device="cuda") for _ in range(2))
    inv = 10000.0 ** (-torch.arange(0, d, 2, device="cuda", dtype=torch.float32) / d)
    ang = torch.arange(t, device="cuda", dtype=torch.float32)[:, None] * inv[None]
    cos, sin = ang.cos(), ang.sin()
    providers = {
        "llm_kernels": lambda q, k: llm_kernels.apply_rope(q, k, cos, sin),
        "eager": lambda q, k: reference.apply_rope(q, k, cos, sin),
    }
    liger_fn, liger = _liger("rope"), None
    if liger_fn is not None:  # Liger wants (B, H, T, D) and full-width (1, T, D) tables
        cos2, sin2 = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]

        def liger(q, k):
            return liger_fn(q.transpose(1, 2), k.transpose(1, 2), cos2, sin2)

    _with_compile_and_liger(providers, providers["eager"], liger)
    qk_bytes = (q.numel() + k.numel()) * E
    return [Case("rope", f"{b}x{t}x{h}x{d}", [q, k], providers, 2 * qk_bytes, 4 * qk_bytes)]


def ce_cases() -> list[Case]:
    n, d, v = CE_SHAPE
    h = torch.randn(n, d, dtype=DTYPE, device="cuda")
    w = 0.02 * torch.randn(v, d, dtype=DTYPE, device="cuda")
    labels = torch.randint(0, v, (n,), device="cuda")

    def eager(h, w):
        return F.cross_entropy((h @ w.T).float(), labels)

    providers = {
        "llm_kernels": lambda h, w: llm_kernels.fused_linear_cross_entropy(h, w, labels)[0],
        "eager": eager,
        "torch.compile": torch.compile(eager),
    }
    liger = _liger("linear_ce")
    if liger is not None:
        loss_mod = liger()
        providers["liger"] = lambda h, w: loss_mod(w, h, labels)
    flops = 2.0 * n * d * v
    return [Case("linear_ce", f"{n}x{d}x{v}", [h, w], providers, None, None, (flops, 3 * flops))]


def _outputs(out) -> list[torch.Tensor]:
    outs = list(out) if isinstance(out, tuple | list) else [out]
    return [o for o in outs if o.requires_grad]


def _measure(fn: Callable, inputs: list[torch.Tensor], mode: str) -> tuple[float, float]:
    """(median ms, peak extra MiB) of one forward or forward + backward call."""
    from triton.testing import do_bench

    if mode == "fwd":
        args = [t.detach() for t in inputs]

        def step():
            with torch.no_grad():
                fn(*args)
    else:
        args = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
        outs = _outputs(fn(*args))
        grads = [torch.randn_like(o) for o in outs]

        def step():
            torch.autograd.backward(_outputs(fn(*args)), grads)

    step()  # warm-up (compiles torch.compile / Triton) before measuring memory
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    grad_to_none = args if mode != "fwd" else None
    return do_bench(step, grad_to_none=grad_to_none, return_mode="median"), peak


def _copy_gb_s(nbytes: float) -> float:
    """GB/s of a plain device copy moving ``nbytes`` in total (half read, half written)."""
    from triton.testing import do_bench

    src = torch.empty(int(nbytes // 2), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    return nbytes / ms / 1e6


def run_case(case: Case) -> list[Row]:
    rows = []
    copy = {m: _copy_gb_s(b) for m, b in (("fwd", case.bytes_fwd), ("fwd+bwd", case.bytes_fwd_bwd))
            if b}  # fmt: skip
    for mode, nbytes, flops in (
        ("fwd", case.bytes_fwd, case.flops and case.flops[0]),
        ("fwd+bwd", case.bytes_fwd_bwd, case.flops and case.flops[1]),
    ):
        for name, fn in case.providers.items():
            try:
                ms, peak = _measure(fn, case.inputs, mode)
            except Exception as err:  # one provider failing (OOM, API drift) must not stop the run
                log.warning("%s %s %s %s failed: %s", case.op, case.shape, name, mode, err)
                torch.cuda.empty_cache()
                continue
            gb_s = nbytes / ms / 1e6 if nbytes else None
            rows.append(Row(case.op, case.shape, name, mode, ms, gb_s,
                            gb_s / copy[mode] if gb_s else None,
                            flops / ms / 1e9 if flops else None, peak))  # fmt: skip
            log.info("%s", rows[-1])
    return rows


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def write_results(rows: list[Row], out_dir: Path) -> None:
    """Markdown table, CSV and PNG (bars of fwd+bwd speed-up over eager), written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = list(asdict(rows[0]))
    tmp = out_dir / "kernels.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    tmp.replace(out_dir / "kernels.csv")
    device = torch.cuda.get_device_name()
    lines = [f"# llm-kernels microbenchmarks ({device}, bf16)", "",
             "| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields)]  # fmt: skip
    lines += ["| " + " | ".join(_fmt(v) for v in asdict(r).values()) + " |" for r in rows]
    tmp = out_dir / "kernels.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out_dir / "kernels.md")
    _plot(rows, out_dir / "kernels.png", device)


def _plot(rows: list[Row], path: Path, device: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
        return
    eager = {(r.op, r.shape, r.mode): r.ms for r in rows if r.provider == "eager"}
    keys = sorted({(r.op, r.shape) for r in rows})
    providers = sorted({r.provider for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd"), strict=True):
        width = 0.8 / len(providers)
        for i, p in enumerate(providers):
            speed = [eager.get((op, sh, mode), float("nan")) / next(
                (r.ms for r in rows if (r.op, r.shape, r.mode, r.provider) == (op, sh, mode, p)),
                float("nan")) for op, sh in keys]  # fmt: skip
            ax.bar([k + i * width for k in range(len(keys))], speed, width, label=p)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))])
        ax.set_xticklabels([f"{op}\n{sh}" for op, sh in keys], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{mode}: speed-up over eager ({device})")
        ax.axhline(1.0, color="black", lw=0.5)
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=["rms_norm", "swiglu", "rope", "linear_ce"],
                        choices=["rms_norm", "swiglu", "rope", "linear_ce"])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="only the smallest shape per op")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU found; these benchmarks need one GPU.", file=sys.stderr)
        return 2
    rows: list[Row] = []
    for op in args.ops:
        if op == "rms_norm":
            cases = rms_cases(RMS_SHAPES[:1] if args.quick else RMS_SHAPES)
        elif op == "swiglu":
            cases = swiglu_cases(SWIGLU_SHAPES[:1] if args.quick else SWIGLU_SHAPES)
        elif op == "rope":
            cases = rope_cases()
        else:
            cases = ce_cases()
        for case in cases:
            rows += run_case(case)
            del case
            torch.cuda.empty_cache()
    if not rows:
        print("bench_kernels: nothing was measured", file=sys.stderr)
        return 1
    write_results(rows, args.out)
    print((args.out / "kernels.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
