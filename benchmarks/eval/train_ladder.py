"""A ladder of models on the sample pipeline: several sizes, each with checkpoints at several
steps, so a distilled suite can be chosen on some of them and checked on others.

1. Curates the sample corpus, trains the tokenizer and writes the shards once, as the run
   ``runs/ladder-data`` (`pretrain curate tokenizer shards`; skipped when up to date).
2. Per size, a run ``runs/ladder-<size>`` that starts from a copy of those shards and tokenizer
   (so every size sees the same tokens) and trains the ``debug`` preset with the size's
   ``model.*`` overrides and number of steps, keeping every checkpoint (`SIZES`).

    uv run python -m benchmarks.eval.train_ladder            # every size, 1 CPU thread each
    uv run python -m benchmarks.eval.train_ladder --sizes s1 s2

A size whose run already has its last checkpoint is skipped, so a second call resumes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from llm_formats import rundir as layout
from llm_formats.checkpoint import MANIFEST, step_dir_name

ROOT = Path(__file__).resolve().parents[2]

# d_model / n_layers rise together; heads keep head_dim 16-32; vocabulary and seq_len follow the
# tokenizer and shards of the sample run (4096, 256). Bigger models also train longer (as in a
# compute-optimal ladder): at 300 steps the two smallest reach the same loss, so size alone
# would not spread the models.
SIZES: dict[str, tuple[int, ...]] = {
    # name: (d_model, n_layers, n_heads, n_kv_heads, ffn_hidden, steps, checkpoint every)
    "s1": (32, 1, 2, 1, 96, 300, 50),
    "s2": (64, 2, 2, 1, 192, 300, 50),
    "s3": (96, 3, 3, 1, 256, 400, 100),
    "s4": (128, 4, 4, 2, 384, 500, 100),  # the debug preset itself
    "s5": (192, 5, 6, 2, 512, 600, 100),
}
SHAPE = ("d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden")
DATA_RUN = "ladder-data"
SHARED = (layout.CURATED, layout.TOKENIZER, layout.TOKENIZER_CARD, layout.SHARDS, layout.STAGES)


def pretrain(*args: str, threads: int) -> None:
    """One `pretrain` call in a subprocess with ``threads`` CPU threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "pretrain.cli", *args]
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def seed_run(runs: Path, name: str) -> Path:
    """``runs/<name>`` with the data run's curated text, tokenizer and shards (copied, so the
    runs stay independent), unless it exists."""
    run = runs / name
    if (run / layout.STAGES).is_file():
        return run
    tmp = runs / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for part in SHARED:
        src = runs / DATA_RUN / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / part)
    tmp.rename(run)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="run root")
    args = parser.parse_args()
    runs = args.runs if args.runs.is_absolute() else ROOT / args.runs
    root = f"run.root={runs}"
    pretrain("curate", "tokenizer", "shards", f"run.name={DATA_RUN}", root, threads=args.threads)
    for size in args.sizes:
        name = f"ladder-{size}"
        run = seed_run(runs, name)
        *shape, steps, every = SIZES[size]
        if (run / "checkpoints" / step_dir_name(steps) / MANIFEST).is_file():
            print(f"{name}: step {steps} exists, skipped", flush=True)
            continue
        model = [f"model.{k}={v}" for k, v in zip(SHAPE, shape, strict=True)]
        train = [
            f"train.steps={steps}",
            f"train.checkpoint_every={every}",
            "train.keep_checkpoints=0",  # every checkpoint is a model of the ladder
            "run.tensorboard=false",
        ]
        start = time.perf_counter()
        pretrain("train", f"run.name={name}", root, *model, *train, threads=args.threads)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
