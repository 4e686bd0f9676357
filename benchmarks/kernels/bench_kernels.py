"""Microbenchmarks of llm-kernels: correctness, time, GB/s, ratio to a device copy, peak memory.

Run on one CUDA GPU: ``python -m benchmarks.kernels.bench_kernels [--ops rms_norm swiglu ...]
[--quick | --targets-only] [--out DIR]``; writes ``kernels-<device-slug>.{md,csv,png}`` to
``benchmarks/results`` (or ``--out``). ``--smoke`` runs tiny shapes anywhere, on a CPU in Triton's
interpreter (``TRITON_INTERPRET=1``, set here before Triton is imported), and writes
``kernels-smoke-<slug>.*`` to a new temporary folder (or ``--out``).

Every op (RMSNorm, RMSNorm + residual, SwiGLU, RoPE, fused linear cross-entropy) runs forward
("fwd") and forward + backward ("fwd+bwd") for each provider: llm_kernels, eager torch, the torch
built-in where one exists (``F.rms_norm``), ``torch.compile`` of the eager code (skipped on a CPU
unless ``--compile-on-cpu``) and Liger-Kernel when it is importable. Inputs are bf16. Before a
case is timed, each provider's outputs (and input gradients) are compared with a float64 eager
reference on the same inputs (see ``kernel_measure``): a provider that disagrees gets ``ok=False``
and a warning, and the script exits 1 if llm_kernels disagrees or fails anywhere. Times are
``triton.testing.do_bench`` medians on CUDA, ``time.perf_counter`` medians on a CPU. Bytes that
must move are defined in ``BYTES`` below (and printed in the Markdown file).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks._common import RESULTS, device_name, device_slug, header, write_atomic
from benchmarks.kernels.kernel_cases import BUILDERS, FULL_SHAPES, OPS, SMOKE_SHAPES, Case
from benchmarks.kernels.kernel_measure import CPU_REPS, TOL, check, copy_gb_s, measure, reference
from benchmarks.kernels.kernel_report import TARGET_SHAPES, Row, csv_text, markdown, plot
from llm_formats.device import resolve_device

log = logging.getLogger("bench_kernels")
BYTES = """\
Bytes that must move (e = 2 bytes per bf16 element; weights, rstd and cos/sin tables ignored):
  rms_norm           fwd: read x, write y = 2 M N e
                     fwd+bwd: + read x, dy, write dx = 5 M N e
  rms_norm_residual  fwd: read x, r, write y, s = 4 M N e
                     fwd+bwd: + read s, dy, ds, write dx = 8 M N e
  swiglu             fwd: read g, u, write o = 3 M N e
                     fwd+bwd: + read do, g, u, write dg, du = 8 M N e
  rope               fwd: read q, k, write q, k = 2 (Q+K) e;  fwd+bwd: 4 (Q+K) e
  linear_ce          compute bound: TFLOP/s (2 N d V fwd, 6 N d V fwd+bwd), no GB/s
copy_ratio = achieved GB/s / GB/s of dst.copy_(src) moving the same number of bytes."""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _providers_ok(case: Case) -> dict[str, tuple[float, float] | None]:
    """Per provider: (fwd error, fwd+bwd error) against float64; None when it raised."""
    try:
        ref = reference(case)
    except Exception as err:  # e.g. the float64 reference does not fit in memory
        log.warning(
            "%s %s: float64 reference failed, nothing checked: %s", case.op, case.shape, err
        )
        return {name: (float("nan"), float("nan")) for name in case.providers}
    errors = {}
    for name in case.providers:
        try:
            errors[name] = check(case, name, ref)
        except Exception as err:  # one provider failing (OOM, API drift) must not stop the run
            log.warning("%s %s %s failed: %s", case.op, case.shape, name, err)
            errors[name] = None
    return errors


def run_case(case: Case, device: torch.device) -> list[Row]:
    """Check every provider, then time the fwd and fwd+bwd of each."""
    errors = _providers_ok(case)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows = []
    for mode, nbytes, flops in (
        ("fwd", case.bytes_fwd, case.flops and case.flops[0]),
        ("fwd+bwd", case.bytes_fwd_bwd, case.flops and case.flops[1]),
    ):
        copy = copy_gb_s(nbytes, device) if nbytes else None
        for name, fn in case.providers.items():
            err = None if errors[name] is None else errors[name][0 if mode == "fwd" else 1]
            ok = err is not None and err <= TOL  # NaN (unchecked) is not ok
            if err is not None and not ok:
                log.warning("%s %s %s %s: max_err %.3g against float64 (tolerance %g)",
                            case.op, case.shape, name, mode, err, TOL)  # fmt: skip
            ms = peak = None
            if err is not None:
                try:
                    ms, peak = measure(fn, case.inputs, mode)
                except Exception as exc:
                    log.warning(
                        "%s %s %s %s timing failed: %s", case.op, case.shape, name, mode, exc
                    )
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            gb_s = nbytes / ms / 1e6 if nbytes and ms else None
            rows.append(Row(case.op, case.shape, name, mode, ok, err, ms, gb_s,
                            gb_s / copy if gb_s and copy else None,
                            flops / ms / 1e9 if flops and ms else None, peak))  # fmt: skip
            log.info("%s", rows[-1])
    return rows


def _shapes(op: str, args: argparse.Namespace) -> list[tuple[int, ...]]:
    if args.smoke:
        return SMOKE_SHAPES[op]
    shapes = FULL_SHAPES[op]
    if args.targets_only:
        shapes = [s for s in shapes if (op, "x".join(map(str, s))) in TARGET_SHAPES]
    return shapes[:1] if args.quick else shapes


def _meta(device: torch.device, args: argparse.Namespace, compile_: bool) -> tuple[list, list]:
    import triton

    meta = header(device_name(device), [("triton", triton.__version__),
                                        ("liger-kernel", _version("liger-kernel"))])  # fmt: skip
    timing = ("triton.testing.do_bench median" if device.type == "cuda"
              else f"time.perf_counter median of {CPU_REPS} calls")  # fmt: skip
    notes = [
        f"- run: {'smoke (tiny shapes' if args.smoke else 'full (benchmark shapes'}"
        + (", CPU: Triton interpreter, times say nothing about speed)" if device.type == "cpu"
           else ")"),
        f"- timing: {timing}; peak_mib: extra memory above the inputs (CUDA only)",
        f"- torch.compile: {'included' if compile_ else 'skipped (CPU; --compile-on-cpu)'}",
        f"- ok / max_err: max over outputs (and input grads for fwd+bwd) of "
        f"max|out - ref| / max|ref| against a float64 eager reference on the same inputs; "
        f"ok = max_err <= {TOL}",
        "", "```", BYTES, "```",
    ]  # fmt: skip
    return meta, notes


def write_results(rows, out: Path, stem: str, meta, notes, with_plot: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{stem}.md", markdown(rows, meta, notes))
    write_atomic(out / f"{stem}.csv", csv_text(rows, meta))
    if with_plot:
        try:
            plot(rows, out / f"{stem}.png", dict(meta)["device"])
        except Exception as err:  # a broken plot must not cost the measurements
            log.warning("plot failed: %s", err)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--quick", action="store_true", help="only the smallest shape per op")
    p.add_argument("--targets-only", action="store_true", help="only the shapes with targets")
    p.add_argument("--smoke", action="store_true", help="tiny shapes; runs on a CPU too")
    p.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    p.add_argument("--compile-on-cpu", action="store_true", help="time torch.compile on a CPU")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--out", type=Path, help="default: benchmarks/results; --smoke: a temp dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    device = torch.device(resolve_device(args.device, cuda_available=torch.cuda.is_available()))
    if device.type != "cuda" and not args.smoke:
        print(
            "bench_kernels: no CUDA device; full shapes need one GPU (try --smoke)", file=sys.stderr
        )
        return 2
    if device.type == "cpu":  # before llm_kernels defines its @triton.jit functions
        os.environ["TRITON_INTERPRET"] = "1"
    compile_ = device.type == "cuda" or args.compile_on_cpu
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench_kernels_")) if args.smoke else RESULTS)
    stem = f"kernels-{'smoke-' if args.smoke else ''}{device_slug(device)}"
    meta, notes = _meta(device, args, compile_)
    rows: list[Row] = []
    unbuilt: list[str] = []
    interrupted = False
    try:
        for op in args.ops:
            for shape in _shapes(op, args):
                if compile_:
                    torch._dynamo.reset()  # fresh static graphs; no recompile limit across cases
                torch.manual_seed(0)
                try:
                    cases = BUILDERS[op]([shape], device, compile_)
                except Exception as err:  # inputs that do not fit, llm_kernels failing to import
                    log.error("%s %s: could not build the case: %s", op, shape, err)
                    unbuilt.append(f"{op} {shape}")
                    continue
                for case in cases:
                    rows += run_case(case, device)
                    write_results(rows, out, stem, meta, notes, with_plot=False)
                del cases
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    except KeyboardInterrupt:  # `timeout -s INT`: keep what was measured
        log.warning("interrupted: writing the %d rows measured so far", len(rows))
        interrupted = True
    if not rows:
        print("bench_kernels: nothing was measured", file=sys.stderr)
        return 1
    write_results(rows, out, stem, meta, notes, with_plot=not args.no_plot)
    print((out / f"{stem}.md").read_text())
    log.info("wrote %s.{md,csv}", out / stem)
    ours = [r for r in rows if r.provider == "llm_kernels"]
    bad = unbuilt + sorted({f"{r.op} {r.shape} {r.mode}" for r in ours if not r.ok or r.ms is None})
    if bad:
        log.error("llm_kernels wrong or failed: %s", "; ".join(bad))
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
