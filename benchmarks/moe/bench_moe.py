"""MoE layer forward + backward: the host-synced expert loop llm-model had vs its sync-free paths.

    uv run python -m benchmarks.moe.bench_moe            # table to stdout and benchmarks/results/
    uv run python -m benchmarks.moe.bench_moe --tokens 512 --reps 3   # quicker

Four ways to run the same layer (same weights, same input, same gradients):

- ``loop``: what ``llm_model.moe`` did before: sort by expert, ``bincount().tolist()`` on the
  host, one matmul per expert (kept here, and in tests/test_moe.py, as the reference);
- ``grouped``: today's path on CPU/fp32 and on CUDA sm90/sm100 in bf16 (``torch._grouped_mm``);
- ``tiled``: today's sync-free fallback elsewhere (fp64, other GPUs): tiles of B rows, one bmm;
- ``dense``: the rejected fallback (every expert on every token), here only to compare.

Columns: median wall and CPU (this process) milliseconds of forward + backward, and the bytes
autograd saves for backward (each storage once, less the input and the parameters): the
activation memory of the layer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from unittest import mock

import torch

from benchmarks._common import RESULTS, device_name, device_slug, header, write_atomic
from llm_model import ModelConfig
from llm_model.feedforward import activate
from llm_model.moe import MoE

PATHS = ("loop", "grouped", "tiled", "dense")
SHAPES = {  # name -> ModelConfig fields of one MoE layer
    "moe-small layer (E=8, k=2, shared 1)": dict(
        d_model=256, n_experts=8, moe_top_k=2, moe_ffn_hidden=512, moe_shared_experts=1
    ),
    "fine-grained (E=64, k=8)": dict(d_model=256, n_experts=64, moe_top_k=8, moe_ffn_hidden=128),
}


def loop_forward(m: MoE, x: torch.Tensor) -> torch.Tensor:
    """The dispatch llm-model had before: a Python loop over experts sized on the host."""
    shape, k = x.shape, m.config.moe_top_k
    x = x.reshape(-1, shape[-1])
    logits = m.router(x).float()
    probs = logits.softmax(-1)
    weights, experts = probs.topk(k, dim=-1)
    weights = (weights / weights.sum(-1, keepdim=True)).flatten().to(x.dtype)
    experts = experts.flatten()
    order = experts.argsort(stable=True)
    token = order // k
    xs, start = x[token], 0
    out = torch.empty_like(xs)
    for e, n in enumerate(torch.bincount(experts, minlength=m.config.n_experts).tolist()):
        if n:
            chunk = xs[start : start + n]
            up = chunk @ m.w3[e].t() if m.w3 is not None else None
            hidden = activate(m.config.activation, chunk @ m.w1[e].t(), up, False)
            out[start : start + n] = hidden @ m.w2[e].t()
        start += n
    y = torch.zeros_like(x).index_add_(0, token, out * weights[order].unsqueeze(-1))
    if m.shared is not None:
        y = y + m.shared(x)
    return y.view(shape)


def dense_forward(m: MoE, x: torch.Tensor) -> torch.Tensor:
    """The sync-free alternative llm-model rejected: every expert on every token, mixed by an
    (N, E) gate matrix zero off each token's top-k (= a padded buffer of capacity N)."""
    x2 = x.reshape(-1, x.shape[-1])
    probs = m.router(x2).float().softmax(-1)
    weights, experts = probs.topk(m.config.moe_top_k, dim=-1)
    weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
    N, (E, h, d) = x2.shape[0], m.w1.shape
    gates = x2.new_zeros(N, E).scatter(1, experts, weights)  # (N, E)
    gate = (x2 @ m.w1.reshape(E * h, d).t()).view(N, E, h)
    up = (x2 @ m.w3.reshape(E * h, d).t()).view(N, E, h) if m.w3 is not None else None
    hidden = activate(m.config.activation, gate, up, False) * gates.unsqueeze(-1)
    y = torch.einsum("neh,edh->nd", hidden, m.w2)
    if m.shared is not None:
        y = y + m.shared(x2)
    return y.view(x.shape)


def forward_fn(path: str):
    """``path``'s forward: a function of (layer, x)."""
    if path in ("loop", "dense"):
        return loop_forward if path == "loop" else dense_forward

    def new(m: MoE, x: torch.Tensor) -> torch.Tensor:
        if path == "tiled":  # the fallback, forced where grouped GEMM would run
            with mock.patch.object(MoE, "_grouped_mm_dtype", lambda self, x: None):
                return m(x)
        assert m._grouped_mm_dtype(x) is not None, "torch._grouped_mm does not run here"
        return m(x)

    return new


def saved_bytes(m: MoE, x: torch.Tensor, forward) -> int:
    """Bytes autograd keeps for backward after one forward, each storage counted once, less
    the input and the parameters."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(m, x)
    for t in (x, *m.parameters()):  # they exist anyway: count what the step adds
        seen.pop(t.untyped_storage().data_ptr(), None)
    return sum(seen.values())


def time_step(m: MoE, x: torch.Tensor, g: torch.Tensor, forward, reps: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of forward + backward (after one untimed step)."""
    walls, cpus = [], []
    for i in range(reps + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        (forward(m, x) * g).sum().backward()
        if i:  # the first step warms allocator and caches
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        m.zero_grad(set_to_none=True)
    return 1e3 * statistics.median(walls), 1e3 * statistics.median(cpus)


def run(tokens: int, reps: int) -> list[str]:
    head = "| layer | tokens | path | fwd+bwd wall ms | fwd+bwd CPU ms | saved for bwd MiB |"
    rows = [head, "|" + "---|" * 6]
    for name, fields in SHAPES.items():
        torch.manual_seed(0)
        m = MoE(ModelConfig(n_layers=1, n_heads=4, **fields))
        x = torch.randn(tokens, fields["d_model"], requires_grad=True)
        g = torch.randn_like(x)
        for path in PATHS:
            forward = forward_fn(path)
            wall, cpu = time_step(m, x, g, forward, reps)
            mib = saved_bytes(m, x, forward) / 2**20
            rows.append(f"| {name} | {tokens} | {path} | {wall:.1f} | {cpu:.1f} | {mib:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per step (B x T)")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per row (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    load_before = f"{os.getloadavg()[0]:.2f}"
    rows = run(args.tokens, args.reps)
    meta = header(device_name(device), [("load average before / after",
                                         f"{load_before} / {os.getloadavg()[0]:.2f}")])  # fmt: skip
    text = "\n".join(
        [
            "# MoE layer forward + backward: host-synced loop vs sync-free paths (CPU, fp32)",
            "",
            *[f"- {k}: {v}" for k, v in meta],
            f"- command: `uv run python -m benchmarks.moe.bench_moe --tokens {args.tokens} "
            f"--reps {args.reps} --threads {args.threads}`",
            "- median of the timed steps; CPU ms count this process only (fairer on a shared "
            "machine); compare rows of one table, not across tables",
            "",
            *rows,
            "",
        ]
    )
    print(text)  # a CLI table: print, not logging
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / f"moe-{device_slug(device)}.md", text)


if __name__ == "__main__":
    main()
