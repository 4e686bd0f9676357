"""RMSNorm fwd+bwd time against the backward's programs per SM (one CUDA GPU).

Run: ``python -m benchmarks.kernels.sweep_rms_bwd``. Prints one row per shape and setting of
``llm_kernels.ops.rms_norm.BWD_PROGRAMS_PER_SM`` (do_bench median, bf16): the numbers behind
the value the module ships with.
"""

from __future__ import annotations

import sys

import torch


def main() -> int:
    from triton.testing import do_bench

    from llm_kernels.ops import rms_norm

    print("| shape | programs/SM | fwd+bwd ms | GB/s (5 x M x N x 2 bytes) |")
    print("| --- | --- | --- | --- |")
    for m, n in [(16384, 4096), (32768, 8192)]:
        x = torch.randn(m, n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        w = torch.rand(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        dy = torch.randn_like(x)

        def step(x=x, w=w, dy=dy):
            rms_norm.rms_norm_triton(x, w, 1e-6).backward(dy)

        for per_sm in (1, 2, 4, 8, 16):
            rms_norm.BWD_PROGRAMS_PER_SM = per_sm
            ms = do_bench(step, grad_to_none=[x, w], return_mode="median")
            gb_s = 5 * m * n * 2 / ms / 1e6
            print(f"| {m}x{n} | {per_sm} | {ms:.4f} | {gb_s:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
