"""Where the time of one fwd+bwd call goes, per GPU kernel: llm_kernels next to the best other.

Run: ``python -m benchmarks.kernels.profile_kernels [--ops rms_norm rope]`` on one CUDA GPU, at
the shapes that have targets (see ``kernel_report.TARGETS``). For each op and provider it prints
torch.profiler's CUDA-time table (top ``--top`` kernels, summed over ``--reps`` calls after one
warm-up), the profile that explains a missed target. ``--smoke`` profiles tiny shapes on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from benchmarks._common import profile_table


def _step(fn, inputs):
    args = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]

    def step():
        from benchmarks.kernels.kernel_measure import as_list

        outs = [o for o in as_list(fn(*args)) if o.requires_grad]
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        for a in args:
            a.grad = None

    return step


def profile(case, provider: str, reps: int, top: int) -> str:
    step = _step(case.providers[provider], case.inputs)
    step()  # compile / autotune outside the profile
    return profile_table(step, reps, top)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", nargs="+", default=["rms_norm", "swiglu", "rope", "linear_ce"])
    p.add_argument("--providers", nargs="+", default=["llm_kernels", "torch.compile", "liger"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, any machine")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before llm_kernels defines its kernels
    from benchmarks.kernels import kernel_cases as kc
    from benchmarks.kernels.kernel_report import TARGET_SHAPES

    builders = {"rms_norm": kc.rms_cases, "swiglu": kc.swiglu_cases, "rope": kc.rope_cases,
                "linear_ce": kc.ce_cases}  # fmt: skip
    device = torch.device("cuda" if cuda else "cpu")
    for op in args.ops:
        shapes = kc.SMOKE_SHAPES[op] if args.smoke else [
            s for s in kc.FULL_SHAPES[op] if (op, "x".join(map(str, s))) in TARGET_SHAPES
        ]  # fmt: skip
        for case in builders[op](shapes, device, compile_=cuda):
            if case.op != op:
                continue  # rms_cases also builds the residual variant
            for provider in args.providers:
                if provider not in case.providers:
                    continue
                print(f"\n=== {case.op} {case.shape} {provider}: fwd+bwd x {args.reps}", flush=True)
                try:
                    print(profile(case, provider, args.reps, args.top), flush=True)
                except Exception as exc:  # one provider's failure must not hide the others
                    print(f"failed: {type(exc).__name__}: {exc}", flush=True)
            del case
            if cuda:
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
