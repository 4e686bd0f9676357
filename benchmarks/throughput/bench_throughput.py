"""Training throughput of llm-model presets: the micro-batch and activation checkpointing that
fit device memory and train fastest, in llm-foundry's table (MFU, HFU, tokens/s/GPU, ...).

Run (one GPU): ``python -m benchmarks.throughput.bench_throughput --presets gpt2-124m llama-1b
--seq-len 2048`` (bf16 autocast). On a CPU the same search runs at debug sizes under
``--memory-cap-gib`` (``--presets debug --seq-len 128 --memory-cap-gib 0.05``).

For each preset (``throughput/search.py``): micro-batch 1, 2, 4, ... without activation
checkpointing until the first that does not fit, then with checkpointing from twice the largest
that fitted; the fastest trial is the preset's row. "Does not fit" is a CUDA out-of-memory
error, or ``tools/memory.py``'s estimate of the step's peak above ``--memory-cap-gib`` (on a CPU
the cap stands in for device memory; default a quarter of RAM). A preset that fits nowhere is
listed with the memory its smallest setting (micro-batch 1, checkpointing) needs. Each trial
builds the model, runs ``--warmup`` untimed steps of llm-train's ``train_step`` (forward,
backward, clip, AdamW, schedule) on random tokens, then times ``--steps`` steps with CUDA
events (``time.perf_counter`` on a CPU). ``--batch-size`` fixes the micro-batch instead.

  MFU = tokens/s x model.flops_per_token(T) / peak      (llm-foundry: 6 N + 12 L d T)
  HFU = the same with the FLOPs the hardware runs: x 4/3 with activation checkpointing (8N, not 6N)

The peak is dense bf16 FLOP/s from ``tools/cost.py``'s table, matched on the device name;
``--peak-flops`` overrides it (a CPU has no entry: MFU is "n/a" unless given). Writes
``benchmarks/results/throughput-<device-slug>.{md,csv,png}`` (replaced atomically), headed with
the date, device, torch version, git revision and load average: the best row per preset, every
trial of the search, and the presets that did not fit. Measured peak memory
(``torch.cuda.max_memory_allocated``) sits next to the estimate.

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
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks._common import (
    RESULTS,
    device_name,
    device_slug,
    header,
    parse_preset,
    profile_table,
    write_atomic,
)
from benchmarks.throughput.search import OutOfMemory, SearchResult, Trial, search
from llm_formats.atomic import atomic_write_bytes
from llm_formats.device import resolve_device
from llm_model import Transformer, get_preset
from llm_train import TrainConfig, build_optimizer, build_scheduler, train_step
from llm_train.parallel import apply_activation_checkpointing, apply_compile
from tools import cost, memory

log = logging.getLogger("bench_throughput")


@dataclass
class Row:
    """One measured trial, in llm-foundry's columns plus step time, compile and memory."""

    model: str
    seq_len: int
    gpus: int
    gpu: str
    mfu: float | None
    hfu: float | None
    model_tflops: float  # achieved model TFLOP/s per device
    micro_batch: int
    grad_accum: int
    global_batch: int
    samples_per_s: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    precision: str
    mp_mode: str
    sharding: str
    activation_checkpointing: bool
    params: int
    compile: bool
    step_ms: float
    peak_mem_gib: float | None  # measured (CUDA); None on a CPU
    est_mem_gib: float  # tools/memory.py's peak estimate


def measure(
    spec: str, seq_len: int, batch: int, steps: int, ac: bool, args, device: torch.device
) -> Row:
    """Build preset ``spec``, warm up ``args.warmup`` steps, time ``steps`` train steps.

    Raises:
        OutOfMemory: CUDA (or the CPU allocator) ran out of memory; memory is freed first.
    """
    try:
        row = _measure(spec, seq_len, batch, steps, ac, args, device)
        _free(device)  # the trial's model and optimizer are gone with _measure's frame
        return row
    except torch.OutOfMemoryError as e:  # CUDA's; the model and optimizer die with the frame
        _free(device)
        raise OutOfMemory(str(e).splitlines()[0]) from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e):  # the CPU allocator's message
            raise
        _free(device)
        raise OutOfMemory(str(e).splitlines()[0]) from None


def _measure(spec, seq_len, batch, steps, ac, args, device) -> Row:
    config = _config(spec)
    torch.manual_seed(0)
    model = Transformer(config).to(device)
    params = model.num_params()
    flops = model.flops_per_token(seq_len)
    if ac:
        apply_activation_checkpointing(model)
    if args.compile:
        torch._dynamo.reset()  # each trial compiles afresh, not against the last one's guards
        apply_compile(model)
    total = args.warmup + steps
    train = TrainConfig(steps=total, lr=1e-4, precision=args.precision, grad_clip=1.0)
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, train)
    ids = torch.randint(0, config.vocab_size, (batch, seq_len + 1), device=device)
    batches = [{"input_ids": ids[:, :-1], "labels": ids[:, 1:]}]
    step = lambda: train_step(model, batches, optimizer, scheduler, train)  # noqa: E731
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        step()
    seconds = _time(step, steps, device)
    if args.profile:
        _profile(step, args.profile, spec)
    tokens_per_s = batch * seq_len / seconds
    peak = args.peak_flops or cost.peak_flops_for_device(device_name(device))
    hw_flops = cost.hardware_flops_per_token(flops, ac)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Row(
        model=spec,
        seq_len=seq_len,
        gpus=1,
        gpu=device_name(device),
        mfu=cost.utilization(tokens_per_s, flops, peak) if peak else None,
        hfu=cost.utilization(tokens_per_s, hw_flops, peak) if peak else None,
        model_tflops=tokens_per_s * flops / 1e12,
        micro_batch=batch,
        grad_accum=1,  # one device, one micro-batch per step
        global_batch=batch,
        samples_per_s=batch / seconds,
        tokens_per_s=tokens_per_s,
        tokens_per_s_per_gpu=tokens_per_s,
        precision=_effective_precision(args.precision, device),
        mp_mode="autocast" if _effective_precision(args.precision, device) != "fp32" else "none",
        sharding="none (1 device)",
        activation_checkpointing=ac,
        params=params,
        compile=args.compile,
        step_ms=seconds * 1e3,
        peak_mem_gib=mem,
        est_mem_gib=_needed(spec, seq_len, batch, ac, args, device) / 2**30,
    )


def _time(step, steps: int, device: torch.device) -> float:
    """Seconds per ``step()``: CUDA events around the loop on a GPU, perf_counter elsewhere."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / steps
    begin = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - begin) / steps


def _config(spec: str):
    name, overrides = parse_preset(spec)
    return get_preset(name, **overrides)


def _needed(spec: str, seq_len: int, batch: int, ac: bool, args, device) -> int:
    """tools/memory.py's estimate of the step's peak bytes for this trial."""
    config = _config(spec)
    precision = _effective_precision(args.precision, device)
    plan = memory.MemoryPlan(
        config=config,
        seq_len=seq_len,
        micro_batch=batch,
        precision="bf16" if precision == "amp_bf16" else "fp32",
        activation_checkpointing=ac,
        kernels=device.type == "cuda" and config.kernels and _kernels_installed(),
    )
    return memory.estimate(plan).peak


def _kernels_installed() -> bool:
    return importlib.util.find_spec("llm_kernels") is not None


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
    "seq_len": "SeqLen",
    "gpus": "#GPUs",
    "gpu": "GPU",
    "mfu": "MFU",
    "hfu": "HFU",
    "model_tflops": "Model TFLOP/s",
    "micro_batch": "MicroBatchSize",
    "grad_accum": "GradAccum",
    "global_batch": "GlobalBatchSize",
    "samples_per_s": "Throughput (S/s)",
    "tokens_per_s": "Throughput (T/s)",
    "tokens_per_s_per_gpu": "Throughput (T/s/GPU)",
    "precision": "Precision",
    "mp_mode": "MP Mode",
    "sharding": "Sharding Strategy",
    "activation_checkpointing": "Activation Checkpointing",
    "params": "NumParams",
    "compile": "Compile",
    "step_ms": "Step (ms)",
    "peak_mem_gib": "PeakMem (GiB)",
    "est_mem_gib": "EstMem (GiB)",
}


@dataclass
class PresetResult:
    """A preset's search: its trials, and the memory its smallest setting needs."""

    spec: str
    seq_len: int
    search: SearchResult
    min_needed_gib: float


MISFIT_HEAD = (
    "| Model | SeqLen | needs at micro-batch 1 (with activation checkpointing if searched; "
    "GiB, estimate) | why |"
)
SEARCH_HEAD = (
    "| Model | SeqLen | MicroBatchSize | Activation Checkpointing | Throughput (T/s) "
    "| EstMem (GiB) | note |"
)


def markdown(results: list[PresetResult], meta: list[tuple[str, str]]) -> str:
    """Best row per preset (llm-foundry's columns), every trial, presets that did not fit."""
    lines = ["# Training throughput", ""] + [f"- {k}: {v}" for k, v in meta] + [""]
    lines.append("| " + " | ".join(COLUMNS.values()) + " |")
    lines.append("|" + " --- |" * len(COLUMNS))
    for r in results:
        if r.search.best is not None:
            values = asdict(r.search.best.result)
            lines.append("| " + " | ".join(_fmt(values[k]) for k in COLUMNS) + " |")
    misfits = [r for r in results if r.search.best is None]
    if misfits:
        lines += ["", "## Did not fit", "", MISFIT_HEAD, "| --- | --- | --- | --- |"]
        for r in misfits:
            why = r.search.trials[-1].reason if r.search.trials else "not tried"
            lines.append(f"| {r.spec} | {r.seq_len} | {r.min_needed_gib:,.2f} | {why} |")
    lines += ["", "## Search", "", SEARCH_HEAD, "|" + " --- |" * 7]
    for r in results:
        for t in r.search.trials:
            tps = _fmt(t.tokens_per_s) if t.tokens_per_s is not None else "did not fit"
            est = _fmt(t.needed_bytes / 2**30) if t.needed_bytes is not None else "n/a"
            note = t.reason or ("best" if t is r.search.best else "")
            lines.append(
                f"| {r.spec} | {r.seq_len} | {t.micro_batch} | {t.activation_checkpointing} "
                f"| {tps} | {est} | {note} |"
            )
    return "\n".join(lines) + "\n"


def csv_text(results: list[PresetResult], meta: list[tuple[str, str]]) -> str:
    """CSV of every trial that ran (``best`` marks each preset's row), provenance lines first."""
    buf = io.StringIO()
    buf.write("".join(f"# {k}: {v}\n" for k, v in meta))
    writer = csv.DictWriter(buf, fieldnames=[*Row.__dataclass_fields__, "best"])
    writer.writeheader()
    for r in results:
        for t in r.search.trials:
            if t.result is not None:
                writer.writerow(asdict(t.result) | {"best": t is r.search.best})
    return buf.getvalue()


def plot(results: list[PresetResult], meta: list[tuple[str, str]], path: Path) -> bool:
    """tokens/s against micro-batch per preset (dashed: activation checkpointing); False when
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(results):
        for ac, style in ((False, "-o"), (True, "--s")):
            ran = [t for t in r.search.trials if t.activation_checkpointing == ac and t.result]
            if ran:
                label = f"{r.spec} T={r.seq_len}" + (" (act. ckpt)" if ac else "")
                xs, ys = [t.micro_batch for t in ran], [t.tokens_per_s for t in ran]
                ax.plot(xs, ys, style, color=f"C{i}", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("micro-batch size")
    ax.set_ylabel("tokens/s per device")
    meta_d = dict(meta)
    ax.set_title(f"{meta_d.get('device', '')}\n{meta_d.get('date', '')}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())
    return True


def _per_preset(values: list[int] | None, presets: list[str], flag: str) -> list[int | None]:
    if values is None:
        return [None] * len(presets)
    if len(values) == 1:
        return values * len(presets)
    if len(values) != len(presets):
        raise SystemExit(f"{flag}: give one value or one per preset ({len(presets)}), got {values}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["debug"], help="name[:field=value,...]")
    p.add_argument("--seq-len", type=int, nargs="+", default=[256])
    p.add_argument("--batch-size", type=int, nargs="+", help="fixed micro-batch (default: search)")
    p.add_argument("--max-micro-batch", type=int, default=256, help="largest one searched")
    p.add_argument(
        "--activation-checkpointing", nargs="?", const="on", choices=["off", "on", "search"],
        help="default: search when searching the micro-batch, off with --batch-size",
    )  # fmt: skip
    p.add_argument(
        "--memory-cap-gib", type=float,
        help="trials whose estimated peak is above this do not run (CPU default: RAM / 4)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, nargs="+", default=[10], help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--profile", type=int, default=0, help="profile N steps after timing")
    p.add_argument("--peak-flops", type=float, default=0.0, help="peak FLOP/s (default: table)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--no-plot", action="store_true", help="write only the .md and .csv")
    return p


def _cap_bytes(args, device: torch.device) -> int | None:
    if args.memory_cap_gib is not None:
        if args.memory_cap_gib <= 0:
            raise SystemExit(f"--memory-cap-gib must be > 0, got {args.memory_cap_gib}")
        return int(args.memory_cap_gib * 2**30)
    if device.type == "cuda":
        return None  # the device's own out-of-memory error decides
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def run_preset(spec, seq_len, batch, steps, args, device, cap) -> PresetResult:
    """Search (or, with ``batch``, measure) one preset."""
    ac_mode = args.activation_checkpointing or ("off" if batch else "search")

    def trial(mb: int, ac: bool):
        log.info("%s: seq_len=%d micro-batch=%d act-ckpt=%s", spec, seq_len, mb, ac)
        row = measure(spec, seq_len, mb, steps, ac, args, device)
        log.info("%s: %.1f tokens/s", spec, row.tokens_per_s)
        return row.tokens_per_s, row

    needed = lambda mb, ac: _needed(spec, seq_len, mb, ac, args, device)  # noqa: E731
    if batch:  # one fixed trial (no cap: asked for explicitly)
        result = SearchResult()
        ac = ac_mode == "on"
        t = Trial(batch, ac, needed_bytes=needed(batch, ac))
        try:
            t.tokens_per_s, t.result = trial(batch, ac)
        except OutOfMemory as e:
            t.reason = f"out of memory: {e}"[:200]
        result.trials.append(t)
    else:
        result = search(trial, needed, cap, max_micro_batch=args.max_micro_batch, ac=ac_mode)
    return PresetResult(spec, seq_len, result, needed(1, ac_mode != "off") / 2**30)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if min(args.steps) < 1 or args.warmup < 0:
        raise SystemExit(f"--steps must be >= 1 and --warmup >= 0, got {args.steps}, {args.warmup}")
    device = torch.device(resolve_device(args.device, cuda_available=torch.cuda.is_available()))
    cap = _cap_bytes(args, device)
    seq_lens = _per_preset(args.seq_len, args.presets, "--seq-len")
    batches = _per_preset(args.batch_size, args.presets, "--batch-size")
    steps = _per_preset(args.steps, args.presets, "--steps")
    stem = args.out_dir / f"throughput-{device_slug(device)}"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    extra = [("load average (1, 5, 15 min)", f"{load} (on a shared machine times are not speeds)")]
    if cap is not None:
        extra.append(("memory cap (GiB)", f"{cap / 2**30:.3f} (tools/memory.py estimates)"))
    results, failed = [], []
    for spec, seq_len, batch, n in zip(args.presets, seq_lens, batches, steps, strict=True):
        try:
            results.append(run_preset(spec, seq_len, batch, n, args, device, cap))
        except Exception as e:  # one preset's failure (a compile error) must not lose the rest
            log.exception("%s: failed", spec)
            failed.append(f"{spec} (seq {seq_len}): {type(e).__name__}: {e}"[:300])
            _free(device)
        meta = header(device_name(device)) + extra + [("failed", f) for f in failed]
        if results:  # after every preset: a run stopped at its time limit keeps what it measured
            _write(stem, results, meta, plot_too=not args.no_plot)
    if not results:
        raise SystemExit("every preset failed: " + "; ".join(failed))
    print(markdown(results, meta))
    log.info("wrote %s.{md,csv%s}", stem, "" if args.no_plot else ",png")
    return 1 if failed else 0


def _write(stem: Path, results: list[PresetResult], meta, *, plot_too: bool) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stem.with_name(stem.name + ".md"), markdown(results, meta))
    write_atomic(stem.with_name(stem.name + ".csv"), csv_text(results, meta))
    if plot_too:
        plot(results, meta, stem.with_name(stem.name + ".png"))


if __name__ == "__main__":
    sys.exit(main())
