"""Training-step throughput of llm-model presets with llm-train's ``train_step``: tokens/s, MFU.

Run: ``uv run python benchmarks/throughput/bench_throughput.py --presets gpt2-124m llama-1b
--seq-len 2048 --batch-size 8 --steps 20 --warmup 5`` (on a GPU; bf16 autocast by default there).

Each preset is built, wrapped like the trainer does (activation checkpointing per block, then
``torch.compile`` per block, if asked), and trained on random tokens: ``--warmup`` steps untimed
(allocator, autotuning, compilation), then ``--steps`` steps timed between ``synchronize`` calls.
A step is one ``train_step`` (forward, backward, grad-norm clip, AdamW update, LR schedule).

  MFU = tokens/s x model.flops_per_token(T) / peak      (llm-foundry: 6 N + 12 L d T)
  HFU = the same with the FLOPs the hardware runs: x 4/3 with activation checkpointing (8N, not 6N)

The peak is dense bf16 FLOP/s from ``tools/cost.py``'s table, matched on the device name;
``--peak-flops`` overrides it (a CPU has no entry: MFU is "n/a" unless given). Writes
``benchmarks/results/throughput-<device-slug>.{md,csv}`` (replaced atomically), headed with the
date, device, torch version and git revision.

Per-preset overrides: ``--presets debug:vocab_size=4096``. ``--seq-len``, ``--batch-size`` and
``--steps`` take one value for all presets or one per preset.
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.util
import io
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llm_model import Transformer, get_preset
from llm_train import TrainConfig, build_optimizer, build_scheduler, train_step
from llm_train.parallel import apply_activation_checkpointing, apply_compile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import (  # noqa: E402
    RESULTS,
    ROOT,
    device_name,
    device_slug,
    header,
    profile_table,
    write_atomic,
)

log = logging.getLogger("bench_throughput")


def _load_cost():
    spec = importlib.util.spec_from_file_location("cost", ROOT / "tools" / "cost.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


cost = _load_cost()


@dataclass
class Row:
    model: str
    params: int
    seq_len: int
    micro_batch: int
    global_batch_tokens: int
    step_ms: float
    tokens_per_s: float
    samples_per_s: float
    mfu: float | None
    hfu: float | None
    precision: str
    activation_checkpointing: bool
    compile: bool
    peak_mem_gib: float | None
    device: str


def parse_preset(spec: str) -> tuple[str, dict]:
    """``"debug:vocab_size=4096,n_layers=2"`` -> ``("debug", {"vocab_size": 4096, "n_layers": 2})``.

    Values are parsed as ``true``/``false`` (bools), then int, then float, else kept as strings
    (``kernels=false`` must not reach the config as the truthy string ``"false"``).
    """
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"preset override {item!r} in {spec!r} is not field=value")
        if value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
            continue
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        overrides[key] = value
    return name, overrides


def measure(
    spec: str, seq_len: int, batch: int, steps: int, args: argparse.Namespace, device: torch.device
) -> Row:
    """Build preset ``spec``, warm up ``args.warmup`` steps, time ``steps`` train steps."""
    name, overrides = parse_preset(spec)
    config = get_preset(name, **overrides)
    torch.manual_seed(0)
    model = Transformer(config).to(device)
    params = model.num_params()
    flops = model.flops_per_token(seq_len)
    if args.activation_checkpointing:
        apply_activation_checkpointing(model)
    if args.compile:
        torch._dynamo.reset()  # each preset compiles afresh, not against the last one's guards
        apply_compile(model)
    total = args.warmup + steps
    train = TrainConfig(steps=total, lr=1e-4, precision=args.precision, grad_clip=1.0)
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, train)
    ids = torch.randint(0, config.vocab_size, (batch, seq_len + 1), device=device)
    batches = [{"input_ids": ids[:, :-1], "labels": ids[:, 1:]}]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        train_step(model, batches, optimizer, scheduler, train)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, batches, optimizer, scheduler, train)
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    if args.profile:
        step = lambda: train_step(model, batches, optimizer, scheduler, train)  # noqa: E731
        _profile(step, args.profile, spec)
    tokens_per_s = batch * seq_len / seconds
    peak = args.peak_flops or cost.peak_flops_for_device(device_name(device))
    hw_flops = cost.hardware_flops_per_token(flops, args.activation_checkpointing)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Row(
        model=spec,
        params=params,
        seq_len=seq_len,
        micro_batch=batch,
        global_batch_tokens=batch * seq_len,  # one device, no accumulation
        step_ms=seconds * 1e3,
        tokens_per_s=tokens_per_s,
        samples_per_s=batch / seconds,
        mfu=cost.utilization(tokens_per_s, flops, peak) if peak else None,
        hfu=cost.utilization(tokens_per_s, hw_flops, peak) if peak else None,
        precision=_effective_precision(args.precision, device),
        activation_checkpointing=args.activation_checkpointing,
        compile=args.compile,
        peak_mem_gib=mem,
        device=device_name(device),
    )


def _profile(step, n: int, spec: str) -> None:
    """Print torch.profiler's kernel table for ``n`` more steps: where a step's time goes."""
    table = profile_table(step, n, 25, self_time=True)
    print(f"\n=== profile of {spec}: {n} steps, {table}", flush=True)


def _effective_precision(precision: str, device: torch.device) -> str:
    # llm_train.precision runs fp32 on CPU even when bf16 is asked for: report what ran.
    return "amp_bf16" if precision == "bf16" and device.type == "cuda" else "fp32"


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 1 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


COLUMNS = {
    "model": "Model",
    "params": "Params",
    "seq_len": "SeqLen",
    "micro_batch": "MicroBatch",
    "global_batch_tokens": "GlobalBatch (tokens)",
    "step_ms": "Step (ms)",
    "tokens_per_s": "Throughput (tokens/s)",
    "samples_per_s": "Throughput (samples/s)",
    "mfu": "MFU",
    "hfu": "HFU",
    "precision": "Precision",
    "activation_checkpointing": "ActCkpt",
    "compile": "Compile",
    "peak_mem_gib": "PeakMem (GiB)",
}


def markdown(rows: list[Row], meta: list[tuple[str, str]]) -> str:
    """The MosaicML-style table with the provenance lines above it."""
    lines = ["# Training throughput", ""] + [f"- {k}: {v}" for k, v in meta] + [""]
    lines.append("| " + " | ".join(COLUMNS.values()) + " |")
    lines.append("|" + " --- |" * len(COLUMNS))
    for row in rows:
        values = asdict(row)
        lines.append("| " + " | ".join(_fmt(values[k]) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[Row], meta: list[tuple[str, str]]) -> str:
    """CSV of all fields, with ``# key: value`` provenance lines first."""
    buf = io.StringIO()
    buf.write("".join(f"# {k}: {v}\n" for k, v in meta))
    writer = csv.DictWriter(buf, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buf.getvalue()


def _per_preset(values: list[int], presets: list[str], flag: str) -> list[int]:
    if len(values) == 1:
        return values * len(presets)
    if len(values) != len(presets):
        raise SystemExit(f"{flag}: give one value or one per preset ({len(presets)}), got {values}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["debug"], help="name[:field=value,...]")
    p.add_argument("--seq-len", type=int, nargs="+", default=[256])
    p.add_argument("--batch-size", type=int, nargs="+", default=[8], help="micro batch")
    p.add_argument("--steps", type=int, nargs="+", default=[10], help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--profile", type=int, default=0, help="profile N steps after timing")
    p.add_argument("--peak-flops", type=float, default=0.0, help="peak FLOP/s (default: table)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if min(args.steps) < 1 or args.warmup < 0:
        raise SystemExit(f"--steps must be >= 1 and --warmup >= 0, got {args.steps}, {args.warmup}")
    device = torch.device(args.device)
    seq_lens = _per_preset(args.seq_len, args.presets, "--seq-len")
    batches = _per_preset(args.batch_size, args.presets, "--batch-size")
    steps = _per_preset(args.steps, args.presets, "--steps")
    stem = args.out_dir / f"throughput-{device_slug(device)}"
    rows, failed = [], []
    for spec, seq_len, batch, n in zip(args.presets, seq_lens, batches, steps, strict=True):
        log.info("%s: seq_len=%d batch=%d steps=%d on %s", spec, seq_len, batch, n, device)
        try:
            rows.append(measure(spec, seq_len, batch, n, args, device))
            log.info("%s: %.1f tokens/s", spec, rows[-1].tokens_per_s)
        except Exception as e:  # one row's failure (OOM, a compile error) must not lose the rest
            log.exception("%s: failed", spec)
            failed.append(f"{spec} (seq {seq_len}, batch {batch}): {type(e).__name__}: {e}"[:300])
            _free(device)
        if rows:  # after every row: a run stopped at its time limit keeps what it measured
            _write(stem, rows, header(device_name(device)) + [("failed", f) for f in failed])
    if not rows:
        raise SystemExit("every preset failed: " + "; ".join(failed))
    print(markdown(rows, header(device_name(device)) + [("failed", f) for f in failed]))
    log.info("wrote %s.{md,csv}", stem)
    return 1 if failed else 0


def _write(stem: Path, rows: list[Row], meta: list[tuple[str, str]]) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stem.with_name(stem.name + ".md"), markdown(rows, meta))
    write_atomic(stem.with_name(stem.name + ".csv"), csv_text(rows, meta))


if __name__ == "__main__":
    sys.exit(main())
