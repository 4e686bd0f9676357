"""Loss curves with and without llm-kernels: a few hundred steps on real text, same init, same data.

Run: ``python -m benchmarks.trajectory.bench_trajectory --steps 300`` (one CUDA GPU; bf16 autocast).
``--smoke`` runs a few tiny steps on any machine (CI checks the script that way).

Three runs of one small Llama-shaped model (RMSNorm, SwiGLU, RoPE, tied head: every kernel is on
the path) on bytes of the shipped Shakespeare sample, identical initial weights and batches:

  kernels  bf16 autocast, llm-kernels on        (what is checked)
  eager    bf16 autocast, llm-kernels off       (the reference)
  fp32     float32, llm-kernels off             (how far bf16 alone moves a curve)

Two bf16 curves never agree bit for bit: rounding differs with the order of operations, and the
difference grows over training. The kernels pass when their distance to the eager curve (mean
|delta loss| over the last quarter of the steps) is within ``--tolerance`` x the distance bf16
itself puts between the eager and fp32 curves, plus 0.01 nats, and every loss is finite. Writes
``trajectory-<device-slug>.{md,png}`` (table every ``--every`` steps, verdict, plot). Exit status 1
when the kernel curve disagrees.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks._common import RESULTS, ROOT, device_name, device_slug, header, write_atomic
from llm_formats.device import resolve_device
from llm_formats.documents import read_documents
from llm_model import Transformer, get_preset
from llm_train import TrainConfig, build_optimizer, build_scheduler, train_step

log = logging.getLogger("bench_trajectory")
TEXT = ROOT / "data" / "sample" / "books" / "shakespeare.jsonl.gz"
RUNS = {  # name: (precision, kernels)
    "kernels": ("bf16", True),
    "eager": ("bf16", False),
    "fp32": ("fp32", False),
}


def load_bytes(path: Path, limit: int) -> torch.Tensor:
    """The first ``limit`` bytes of the documents' text, one token per byte (vocabulary 256)."""
    data = bytearray()
    for doc in read_documents(path):
        data += doc.text.encode("utf-8") + b"\n"
        if len(data) >= limit:
            break
    return torch.frombuffer(data[:limit], dtype=torch.uint8).long()


def batches(tokens: torch.Tensor, steps: int, batch: int, seq_len: int, seed: int):
    """The same random windows for every run: ``steps`` lists of one micro-batch each."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(tokens) - seq_len - 1, (steps, batch), generator=g)
    offsets = torch.arange(seq_len + 1)
    for row in starts:
        window = tokens[row[:, None] + offsets]
        yield [{"input_ids": window[:, :-1], "labels": window[:, 1:]}]


def model_config(args: argparse.Namespace, kernels: bool):
    return get_preset(
        "debug", d_model=args.d_model, n_layers=args.n_layers, n_heads=args.d_model // 64,
        n_kv_heads=max(1, args.d_model // 128), ffn_hidden=None, vocab_size=256,
        max_seq_len=args.seq_len, kernels=kernels,
    )  # fmt: skip


def train(args, tokens, device, precision: str, kernels: bool, init: dict) -> list[float]:
    model = Transformer(model_config(args, kernels)).to(device)
    model.load_state_dict(init)
    config = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=args.steps // 10,
                         precision=precision, grad_clip=1.0)  # fmt: skip
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    losses = []
    for micro in batches(tokens, args.steps, args.batch_size, args.seq_len, args.seed):
        micro = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in micro]
        losses.append(float(train_step(model, micro, optimizer, scheduler, config)["loss"]))
    return losses


def tail_distance(a: list[float], b: list[float]) -> float:
    """Mean |a - b| over the last quarter of the steps (where the curves have spread most)."""
    n = max(1, len(a) // 4)
    return sum(abs(x - y) for x, y in zip(a[-n:], b[-n:], strict=True)) / n


def verdict(curves: dict[str, list[float]], tolerance: float) -> tuple[bool, list[str]]:
    finite = all(torch.isfinite(torch.tensor(c)).all() for c in curves.values())
    d_kernels = tail_distance(curves["kernels"], curves["eager"])
    d_bf16 = tail_distance(curves["eager"], curves["fp32"])
    bound = tolerance * d_bf16 + 0.01
    ok = finite and d_kernels <= bound
    lines = [
        f"- kernels vs eager (bf16), mean |delta loss| over the last quarter: {d_kernels:.4f}",
        f"- eager bf16 vs fp32 (what bf16 alone does), same measure: {d_bf16:.4f}",
        f"- bound: {tolerance:g} x {d_bf16:.4f} + 0.01 = {bound:.4f}; all losses finite: {finite}",
        f"- verdict: {'AGREE' if ok else 'DISAGREE'}",
    ]
    return ok, lines


def markdown(curves, args, meta, lines) -> str:
    out = ["# Loss trajectory with and without llm-kernels", ""]
    out += [f"- {k}: {v}" for k, v in meta]
    out += [f"- model: {args.n_layers} layers, d_model {args.d_model}, byte vocabulary (256), "
            f"seq {args.seq_len}, batch {args.batch_size}, lr {args.lr}, {args.steps} steps, "
            f"data: {TEXT.relative_to(ROOT)}", ""]  # fmt: skip
    out += lines + ["", "| step | " + " | ".join(curves) + " |", "|" + " --- |" * (len(curves) + 1)]
    steps = sorted({*range(0, args.steps, args.every), args.steps - 1})
    for i in steps:
        out.append(f"| {i + 1} | " + " | ".join(f"{c[i]:.4f}" for c in curves.values()) + " |")
    return "\n".join(out) + "\n"


def plot(curves: dict[str, list[float]], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[2, 1])
    for name, losses in curves.items():
        top.plot(range(1, len(losses) + 1), losses, label=name, linewidth=1)
    top.set(ylabel="loss (nats/byte)", title=title)
    top.legend()
    for name in ("kernels", "fp32"):
        delta = [a - b for a, b in zip(curves[name], curves["eager"], strict=True)]
        bottom.plot(range(1, len(delta) + 1), delta, label=f"{name} - eager", linewidth=1)
    bottom.axhline(0, color="grey", linewidth=0.5)
    bottom.set(xlabel="step", ylabel="delta loss")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--n-layers", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=25, help="table row every N steps")
    p.add_argument("--tolerance", type=float, default=2.0, help="x the bf16-vs-fp32 distance")
    p.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    p.add_argument("--smoke", action="store_true", help="tiny model, 8 steps: any machine")
    p.add_argument("--out", type=Path, help="default: benchmarks/results; --smoke: a temp dir")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.smoke:
        args.steps, args.batch_size, args.seq_len, args.d_model, args.n_layers = 8, 2, 32, 128, 2
        args.every = 2
    if args.steps < 4 or args.d_model % 128:
        raise SystemExit(f"--steps must be >= 4 and --d-model a multiple of 128, got {args}")
    out = args.out or (Path(tempfile.mkdtemp(prefix="trajectory-")) if args.smoke else RESULTS)
    device = torch.device(resolve_device(args.device, cuda_available=torch.cuda.is_available()))
    tokens = load_bytes(TEXT, 4 << 20)
    torch.manual_seed(args.seed)
    init = Transformer(model_config(args, kernels=False)).state_dict()
    curves = {}
    for name, (precision, kernels) in RUNS.items():
        curves[name] = train(args, tokens, device, precision, kernels, init)
        log.info("%s: loss %.4f -> %.4f", name, curves[name][0], curves[name][-1])
    ok, lines = verdict(curves, args.tolerance)
    meta = header(device_name(device))
    stem = ("trajectory-smoke-" if args.smoke else "trajectory-") + device_slug(device)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(curves, args, meta, lines)
    write_atomic(out / f"{stem}.md", text)
    plot(curves, out / f"{stem}.png", f"llm-kernels on/off, {device_name(device)}")
    print(text)
    log.info("wrote %s.{md,png}", out / stem)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
