"""Fused linear cross-entropy: time and peak memory against the logits chunk (one CUDA GPU).

Run: ``python -m benchmarks.kernels.sweep_linear_ce``. At the target shape (16384 tokens, d 4096,
V 128256, bf16) it times fwd+bwd of llm_kernels for several chunk sizes next to eager, with the
same measurement as bench_kernels (do_bench median; peak memory above the inputs). Each chunk is
one pass of the float32 grad_weight accumulator through memory, and holds a float32 logits tile
and a bf16 dlogits tile: fewer, larger chunks trade memory for time. The numbers behind the
default chunk of ``llm_kernels.ops.linear_cross_entropy``.
"""

from __future__ import annotations

import sys

import torch


def main() -> int:
    from benchmarks.kernels import kernel_cases as kc
    from benchmarks.kernels.kernel_measure import measure
    from llm_kernels.ops.linear_cross_entropy import fused_linear_cross_entropy_triton

    (case,) = kc.ce_cases([(16384, 4096, 128256)], torch.device("cuda"), compile_=False)
    labels = torch.randint(0, 128256, (16384,), device="cuda")
    eager_ms, eager_mib = measure(case.providers["eager"], case.inputs, "fwd+bwd")
    print("| provider | chunk rows | fwd+bwd ms | x eager time | peak MiB | x eager memory |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| eager | - | {eager_ms:.1f} | 1.000 | {eager_mib:,.0f} | 1.000 |", flush=True)
    for rows in (523, 1024, 1536, 2048, 4096):

        def fn(h, w, rows=rows):
            return fused_linear_cross_entropy_triton(h, w, labels, chunk_size=rows)[0]

        ms, mib = measure(fn, case.inputs, "fwd+bwd")
        print(f"| llm_kernels | {rows} | {ms:.1f} | {ms / eager_ms:.3f} | {mib:,.0f} | "
              f"{mib / eager_mib:.3f} |", flush=True)  # fmt: skip
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
