"""Peak host memory per rank under torchrun: what a ~145M-parameter model adds over a tiny one.

Run: ``uv run python -m benchmarks.memory.bench_host_memory --work /tmp/host-memory`` (CPU,
gloo; a few minutes on 2 cores). ``--src ROOT`` measures another checkout's code (its
``packages/*/src`` and ``apps/pretrain/src`` go first on ``PYTHONPATH``), e.g. main before a
change: ``git archive main | tar -x -C /tmp/main-src``.

The `pretrain` app's stages curate a small part of ``data/sample`` (books and code), train a
512-token tokenizer and write 64-token shards once (in ``--work``). Then ``pretrain train`` runs
twice under ``torchrun --nproc-per-node 4`` (gloo on CPU, fp32, Lion, ``--steps`` steps, one
checkpoint at the end): once with the tiny model and once with the ~145M one (d_model 1024,
12 layers, MHA, SwiGLU 2560), the same data, batch and everything else. Each rank records its
peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when ``main`` returns.
The table gives, per rank, the peak of each run and what the big model adds, in units of its
fp32 bytes (4 x parameters). With 4 ranks, sharded fp32 parameters, gradients and Lion's one
moment are 0.75x; the rest is what the run gathers (FSDP's all-gathered blocks, ...) or copies.

Writes ``benchmarks/results/host-memory-<cpu>.md`` (``--out`` elsewhere); ``--label`` names
the measured code in the file name and the table (e.g. ``main``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS, ROOT, device_name, device_slug, header, write_atomic

log = logging.getLogger("bench_host_memory")
BIN = Path(sys.executable).parent
NPROC = 4
BIG = {"d_model": 1024, "n_layers": 12, "n_heads": 16, "n_kv_heads": 16, "ffn_hidden": 2560}
TINY = {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_hidden": 128}

# Runs `pretrain` (its CLI's main) in each rank and writes that rank's peak RSS when it returns.
RECORDER = """\
import json, os, resource, sys
from pretrain.cli import main
code = main(sys.argv[1:])
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
out = os.path.join(os.environ["RSS_DIR"], f"rank{os.environ['RANK']}.json")
with open(out, "w") as f:
    json.dump({"rank": int(os.environ["RANK"]), "peak_bytes": peak_kib * 1024}, f)
sys.exit(code)
"""


def write_config(work: Path, batch_size: int) -> Path:
    """The run's YAML: books and code from data/sample, a 512-token tokenizer, 64-token rows."""
    sample = ROOT / "data" / "sample"
    config = {
        "run": {"name": "base", "root": str(work / "runs"), "device": "cpu",
                "tensorboard": False},
        "data": {
            "sources": [
                {"name": "books", "path": str(sample / "books"), "format": "jsonl",
                 "quality_filters": False},
                {"name": "code", "path": str(sample / "code"), "format": "jsonl",
                 "quality_filters": False},
            ],
            "decontamination": {"eval_paths": []},
        },
        "tokenizer": {"vocab_size": 512},
        "shards": {"seq_len": 64, "heldout_fraction": 0.05},
        "loader": {"batch_size": batch_size, "proportions": {"books": 0.5, "code": 0.5}},
        "train": {"optimizer": "lion", "lr": 1e-3, "precision": "fp32", "warmup_steps": 1,
                  "log_every": 1, "checkpoint_every": 0},
        "eval": {"tasks": [], "bpb_sets": {}},
    }  # fmt: skip
    path = work / "config.json"  # JSON is YAML: the app reads it as its --config
    path.write_text(json.dumps(config, indent=1))
    return path


def _env(src: Path) -> dict[str, str]:
    """The environment with ``src``'s packages first on the import path."""
    paths = sorted(str(p) for p in (src / "packages").glob("*/src"))
    paths.append(str(src / "apps" / "pretrain" / "src"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def prepare(config: Path, work: Path, env: dict[str, str]) -> Path:
    """Curate, train the tokenizer and write the shards once, in ``runs/base``."""
    base = work / "runs" / "base"
    if (base / "shards").exists():
        log.info("reusing %s", base)
        return base
    cmd = [str(BIN / "pretrain"), "--config", str(config), "curate", "tokenizer", "shards"]
    subprocess.run(cmd, check=True, env=env, cwd=work)
    return base


def run(config: Path, base: Path, name: str, model: dict, steps: int, env) -> dict:
    """``pretrain train`` of ``model`` on NPROC ranks; {rank: peak bytes} and the parameters."""
    run_dir = base.parent / name
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(base, run_dir)
    rss = run_dir / "rss"
    rss.mkdir()
    recorder = base.parent / "record_rss.py"
    recorder.write_text(RECORDER)
    overrides = [f"model.{k}={v}" for k, v in model.items()]
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(NPROC), str(recorder),
           "--config", str(config), "train", f"run.name={name}", f"train.steps={steps}",
           *overrides]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(env, RSS_DIR=str(rss)), cwd=base.parent.parent,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"{name}: torchrun failed:\n{proc.stderr[-4000:]}")
    peaks = {}
    for path in rss.glob("rank*.json"):
        record = json.loads(path.read_text())
        peaks[record["rank"]] = record["peak_bytes"]
    params = json.loads((run_dir / "stages.json").read_text())["train"]["params"]
    log.info("%s: %d params, %.0f s", name, params, time.perf_counter() - start)
    return {"peaks": peaks, "params": params}


def markdown(tiny: dict, big: dict, meta, args) -> str:
    fp32 = 4 * big["params"]
    mib = 2**20
    out = ["# Peak host memory per rank under torchrun", ""]
    out += [f"- {k}: {v}" for k, v in meta]
    out += [
        f"- code measured: {args.label}",
        f"- {NPROC} gloo ranks on CPU, fp32, Lion, {args.steps} steps, batch "
        f"{args.batch_size} x 64 tokens per rank, a checkpoint at the end",
        f"- tiny model: {tiny['params']:,} parameters; big model: {big['params']:,} "
        f"parameters = {fp32 / mib:,.0f} MiB in fp32",
        "- peak: `ru_maxrss` of each rank's process; added = big - tiny",
        f"- command: `python -m benchmarks.memory.bench_host_memory --steps {args.steps} "
        f"--label {args.label}`" + (f" with `--src {args.src}`" if args.src != ROOT else ""),
        "",
        "| rank | peak, tiny (MiB) | peak, big (MiB) | added (MiB) | added / fp32 model bytes |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for rank in sorted(big["peaks"]):
        t, b = tiny["peaks"][rank], big["peaks"][rank]
        out.append(f"| {rank} | {t / mib:,.0f} | {b / mib:,.0f} | {(b - t) / mib:,.0f} | "
                   f"{(b - t) / fp32:.2f}x |")  # fmt: skip
    return "\n".join(out) + "\n"


def added_ratios(tiny: dict, big: dict) -> dict[int, float]:
    """Per rank: (peak of the big run - peak of the tiny run) / the big model's fp32 bytes."""
    fp32 = 4 * big["params"]
    return {r: (big["peaks"][r] - tiny["peaks"][r]) / fp32 for r in big["peaks"]}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2, help="sequences per rank and step")
    p.add_argument("--work", type=Path, help="shards and runs (default: a temporary folder)")
    p.add_argument("--src", type=Path, default=ROOT, help="checkout whose code runs")
    p.add_argument("--label", default="this checkout", help="what --src is, for the table")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = _parser().parse_args(argv)
    work = (args.work or Path(tempfile.mkdtemp(prefix="host-memory-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = _env(args.src.resolve())
    config = write_config(work, args.batch_size)
    base = prepare(config, work, env)
    tiny = run(config, base, "tiny", TINY, args.steps, env)
    big = run(config, base, "big", BIG, args.steps, env)
    device = torch.device("cpu")
    text = markdown(tiny, big, header(device_name(device)), args)
    label = "" if args.src == ROOT else "-" + args.label.replace(" ", "-")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"host-memory-{device_slug(device)}{label}.md"
    write_atomic(path, text)
    print(text)
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
