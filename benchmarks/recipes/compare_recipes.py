"""Pretraining recipes compared on the shipped sample: optimizers, schedules, batch-size warmup.

Run: ``uv run python -m benchmarks.recipes.compare_recipes --work /tmp/recipes`` (CPU; see the
results file for how long it took).
``--smoke`` trains each variant for a few steps (checks the script, not the recipes).

The `pretrain` app's stages curate ``data/sample``, train its tokenizer and write the shards once
(in ``--work``, a temporary folder by default); then every variant trains the ``debug`` preset
from the same initial weights on the same batches, to the same number of tokens:

  adamw             AdamW, warmup + cosine to 0.1 x lr (the app's default recipe)
  lion              Lion at lr / 3, weight decay x 3, betas (0.9, 0.99): the Lion paper's rule
                    of thumb for moving from AdamW, not tuned here
  adamw8bit         torchao's AdamW8bit (8-bit moments), otherwise as adamw
  wsd+anneal        AdamW, warmup + stable + 20% linear decay to 0.1 x lr + 10% anneal to 0
  batch-warmup      AdamW + cosine, the global batch ramping from one micro-batch to two over
                    the first third of the tokens (so it takes more, smaller steps)

For each: the last training losses, held-out bits per byte (``llm_eval.bits_per_byte`` on the
shards' held-out documents), the optimizer state's bytes, and the wall time (the machine is
shared: see the load averages in the header). Writes ``recipes-<device>.{md,csv,png}`` under
``benchmarks/recipes/results``. The numbers are what one run gives; nothing is tuned to them.

torchao compiles the ``AdamW8bit`` step for each parameter shape on its first step (inductor's
C++ builds: minutes on 2 busy cores, cached under the system's temp folder for later runs), so
that recipe's wall time includes the compilation on a first run. Run eagerly, its step took
13-58 s here against AdamW's 0.7 s, so eager is no way around it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, device_name, device_slug, header, write_atomic
from llm_formats import rundir as layout
from llm_formats.metrics import read_metrics
from llm_train import TrainConfig, Trainer
from llm_train.batch_warmup import micro_batches_at
from llm_train.optimizer import optimizer_state_bytes
from pretrain import stages
from pretrain.config import PretrainConfig, load_pretrain_config

log = logging.getLogger("compare_recipes")
RESULTS = Path(__file__).resolve().parent / "results"


def variants(base: TrainConfig, tokens_per_step: int) -> dict[str, TrainConfig]:
    """The recipes, each a ``TrainConfig`` over the same number of tokens as ``base``."""
    lion = dataclasses.replace(
        base, optimizer="lion", lr=base.lr / 3, weight_decay=round(base.weight_decay * 3, 6),
        betas=(0.9, 0.99),
    )  # fmt: skip
    wsd = dataclasses.replace(base, schedule="wsd", decay_fraction=0.2, anneal_fraction=0.1)
    budget = base.steps * tokens_per_step
    ramp = dataclasses.replace(
        base, batch_warmup_tokens=budget // 3, batch_warmup_start_tokens=tokens_per_step // 2
    )
    ramp = dataclasses.replace(ramp, steps=steps_for_tokens(ramp, budget, tokens_per_step))
    return {
        "adamw": base,
        "lion": lion,
        "adamw8bit": dataclasses.replace(base, optimizer="adamw8bit"),
        "wsd+anneal": wsd,
        "batch-warmup": ramp,
    }


def steps_for_tokens(config: TrainConfig, budget: int, tokens_per_step: int) -> int:
    """Steps that train on ``budget`` tokens (the last may overshoot by less than a step)
    when batches ramp as ``config`` says; ``tokens_per_step`` is the full global batch."""
    micro = tokens_per_step // config.grad_accum_steps
    steps = tokens = 0
    while tokens < budget:
        tokens += micro * micro_batches_at(tokens, micro, config)
        steps += 1
    return steps


def build_shards(config: PretrainConfig, work: Path) -> Path:
    """Curate and train the tokenizer once (``work/base``), then write the shards for this
    sequence length once (``work/base-<seq_len>``), with the app's own stages."""
    base = work / "base"
    base.mkdir(parents=True, exist_ok=True)
    for stage, output in ((stages.curate, layout.CURATED), (stages.tokenizer, layout.TOKENIZER)):
        _run_stage(stage, config, base, base / output)
    sized = work / f"base-{config.shards.seq_len}"
    sized.mkdir(exist_ok=True)
    for name in (layout.CURATED, layout.TOKENIZER):
        if not (sized / name).exists():
            (sized / name).symlink_to(base / name)
    _run_stage(stages.shards, config, sized, sized / layout.SHARD_STATS)
    return sized


def _run_stage(stage, config: PretrainConfig, run_dir: Path, output: Path) -> None:
    if output.exists():
        log.info("reusing %s", output)
        return
    start = time.perf_counter()
    stage(config, run_dir)
    log.info("%s: %.0f s", stage.__name__, time.perf_counter() - start)


def train_variant(config: PretrainConfig, base: Path, run_dir: Path, device) -> dict:
    """Train one variant in ``run_dir`` (sharing ``base``'s shards); its row of the table."""
    from llm_data import build_loader
    from llm_eval import bits_per_byte
    from llm_tokenize import Tokenizer

    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (layout.SHARDS, layout.TOKENIZER):
        if not (run_dir / name).exists():
            (run_dir / name).symlink_to(base / name)
    model = stages.build_model(config, run_dir, device)  # seeded: the same init for every run
    loader = build_loader(
        run_dir / layout.SHARDS,
        seq_len=config.shards.seq_len,
        batch_size=config.loader.batch_size,
        proportions=dict(config.loader.proportions) or None,
        seed=config.loader.seed,
    )
    start = time.perf_counter()
    trainer = Trainer(model, loader, config.train, run_dir, resume=False)
    trainer.fit()
    seconds = time.perf_counter() - start
    records = read_metrics(run_dir / layout.METRICS)
    texts = stages.heldout_texts(run_dir, 0)
    tok = Tokenizer.from_file(run_dir / "tokenizer.json")
    model.eval()
    bpb = bits_per_byte(model, tok, texts, seq_len=config.shards.seq_len, device=device)["bpb"]
    last = [r["loss"] for r in records[-5:]]
    return {
        "steps": trainer.step,
        "tokens": trainer.tokens,
        "final_loss": records[-1]["loss"],
        "last5_loss": sum(last) / len(last),
        "heldout_bpb": bpb,
        "optimizer_bytes": optimizer_state_bytes(trainer.optimizer),
        "seconds": seconds,
        "curve": [(r["tokens"], r["loss"], r["lr"]) for r in records],
    }


def markdown(rows: dict[str, dict], configs: dict[str, TrainConfig], meta, args) -> str:
    out = ["# Pretraining recipes on the shipped sample", ""]
    out += [f"- {k}: {v}" for k, v in meta]
    base = configs["adamw"]
    out += [
        f"- model: `debug` preset; batch {args.batch_size} x {args.seq_len} tokens x "
        f"{base.grad_accum_steps} micro-batches per step; {base.steps} steps of AdamW "
        f"(lr {base.lr:g}, warmup {base.warmup_steps}); every run the same init and data order",
        "- the machine is shared with other jobs: wall times are indicative only",
        "",
        "| recipe | steps | tokens | final loss | mean loss, last 5 steps | held-out bits/byte "
        "| optimizer state (bytes) | wall (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        out.append(
            f"| {name} | {r['steps']} | {r['tokens']} | {r['final_loss']:.4f} | "
            f"{r['last5_loss']:.4f} | {r['heldout_bpb']:.4f} | {r['optimizer_bytes']:,} | "
            f"{r['seconds']:.0f} |"
        )
    out += ["", "Configs (the fields that differ from `adamw`):", ""]
    for name, config in configs.items():
        diff = {
            k: v for k, v in dataclasses.asdict(config).items()
            if v != dataclasses.asdict(base)[k]
        }  # fmt: skip
        out.append(f"- {name}: {diff or 'the baseline'}")
    return "\n".join(out) + "\n"


def csv(rows: dict[str, dict]) -> str:
    keys = ["steps", "tokens", "final_loss", "last5_loss", "heldout_bpb", "optimizer_bytes",
            "seconds"]  # fmt: skip
    lines = ["recipe," + ",".join(keys)]
    lines += [name + "," + ",".join(str(r[k]) for k in keys) for name, r in rows.items()]
    return "\n".join(lines) + "\n"


def plot(rows: dict[str, dict], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1])
    for name, r in rows.items():
        tokens, loss, lr = zip(*r["curve"], strict=True)
        top.plot(tokens, loss, label=name, linewidth=1)
        bottom.plot(tokens, [x / max(lr) for x in lr], label=name, linewidth=1)
    top.set(ylabel="training loss (nats/token)", title=title)
    top.legend()
    bottom.set(xlabel="tokens", ylabel="lr / peak")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100, help="steps of the baseline")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--accum", type=int, default=2, help="micro-batches per full step")
    p.add_argument("--only", nargs="*", help="run only these recipes")
    p.add_argument("--work", type=Path, help="shards and runs (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    p.add_argument("--smoke", action="store_true", help="3 steps per recipe, tiny batches")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.smoke:
        args.steps, args.batch_size, args.seq_len = 3, 2, 64
    device = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # the config's paths (data/sample) are relative to the repository
    config = load_pretrain_config(None, [
        f"shards.seq_len={args.seq_len}", f"loader.batch_size={args.batch_size}",
        "run.device=cpu", "eval.tasks=[]",
    ])  # fmt: skip
    train = dataclasses.replace(
        config.train, steps=args.steps, warmup_steps=max(1, args.steps // 10), log_every=1,
        checkpoint_every=0, grad_accum_steps=args.accum, precision="fp32",
    )  # fmt: skip
    tokens_per_step = args.batch_size * args.seq_len * args.accum
    configs = variants(train, tokens_per_step)
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only or k == "adamw"}
    work = args.work or Path(tempfile.mkdtemp(prefix="recipes-"))
    load_before, start = os.getloadavg(), time.perf_counter()
    base = build_shards(config, work)
    rows = {}
    for name, train_config in configs.items():
        variant = dataclasses.replace(config, train=train_config)
        rows[name] = train_variant(variant, base, work / name, device)
        log.info("%s: loss %.4f, bpb %.4f", name, rows[name]["final_loss"],
                 rows[name]["heldout_bpb"])  # fmt: skip
    load = f"{load_before} before, {os.getloadavg()} after (1, 5, 15 min)"
    total = f"{time.perf_counter() - start:.0f} s (shards included)"
    meta = header(device_name(device), [("load average", load), ("total wall time", total)])
    stem = ("recipes-smoke-" if args.smoke else "recipes-") + device_slug(device)
    out = args.out if not args.smoke or args.out != RESULTS else work
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, configs, meta, args)
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.csv", csv(rows))
    plot(rows, out / f"{stem}.png", f"recipes on the sample, {device_name(device)}")
    print(text)
    log.info("wrote %s.{md,csv,png}", out / stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
