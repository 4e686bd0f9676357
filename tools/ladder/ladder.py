"""Scaling ladder: train small models on the same data, fit power laws, predict a bigger one.

Run: ``uv run python -m tools.ladder.ladder --check-target`` (byte-level text of data/sample,
minutes on 2 CPU cores), or on a pretrain run's BPE shards: ``--pretrain-run runs/ladder``
(built with the pretrain stages curate, tokenizer and shards when it has none yet).

"Start small and work your way up": each rung is a Llama-shaped llm-model (RMSNorm, SwiGLU, RoPE,
tied embeddings) of width d (layers and heads grow with it), trained with llm-train's
``train_step`` on the same batches for ``tokens_per_param`` x its non-embedding parameters N
(the Chinchilla rule's shape; compute C = model.flops_per_token(T) x tokens). Its loss is the
mean cross-entropy on held-out text. Two power laws are fitted in log space (``fit.py``):
loss against C and loss against N; each predicts the loss of the ``--target`` width at its own
budget, with a 95% prediction interval. ``--check-target`` trains the target too, so the table
shows prediction against measurement. Writes ``ladder.{md,csv,png}`` to ``--out`` (default
``tools/ladder/results/``), headed with the date, machine, load average and git revision.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from llm_formats.atomic import atomic_write_bytes, atomic_write_text
from llm_formats.documents import read_documents
from llm_formats.heldout import read_heldout
from llm_formats.shards import SHARD_STATS_FILE, read_shard_stats
from llm_model import ModelConfig, Transformer, get_preset
from llm_train import TrainConfig, build_optimizer, build_scheduler, train_step
from tools.ladder.fit import PowerLaw, fit_power_law

log = logging.getLogger("ladder")
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TEXT = [ROOT / "data/sample/books/shakespeare.jsonl.gz",
               ROOT / "data/sample/code/python-stdlib.jsonl.gz"]  # fmt: skip
Batch = dict[str, torch.Tensor]


@dataclass(kw_only=True)
class LadderConfig:
    """What the ladder trains.

    Attributes:
        widths: d_model of each rung, smallest first (>= 3 rungs for an interval).
        target: d_model whose loss is predicted.
        seq_len: Tokens per sample T.
        batch_size: Samples per step B.
        tokens_per_param: Training tokens per non-embedding parameter of each rung.
        lr: Peak learning rate (warmup 10% of the steps, then cosine to 10%).
        eval_batches: Held-out batches of ``batch_size`` x ``seq_len`` tokens for the loss.
        seed: Model init and batch order (the same batches for every rung).
    """

    widths: list[int] = field(default_factory=lambda: [16, 32, 48, 64, 96])
    target: int = 128
    seq_len: int = 32
    batch_size: int = 4
    tokens_per_param: float = 1.0  # a CPU budget: small batches, many steps (Chinchilla: 20)
    lr: float = 1e-2
    eval_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or sorted(set(self.widths)) != list(self.widths):
            raise ValueError(f"LadderConfig.widths={self.widths} must be >= 2 increasing widths")
        if any(w < 16 or w % 16 for w in [*self.widths, self.target]):
            raise ValueError("LadderConfig.widths and target must be multiples of 16, >= 16")
        if self.target <= self.widths[-1]:
            raise ValueError(f"LadderConfig.target={self.target} must exceed the widest rung")
        for name in ("seq_len", "batch_size", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"LadderConfig.{name}={getattr(self, name)} must be >= 1")
        for name in ("tokens_per_param", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"LadderConfig.{name}={value} must be a finite number > 0")


def rung_config(width: int, vocab_size: int, seq_len: int) -> ModelConfig:
    """The Llama-shaped model of a rung: 16-wide heads, one layer per 32 of width (>= 2)."""
    return get_preset(
        "debug",
        d_model=width,
        n_layers=max(2, width // 32),
        n_heads=width // 16,
        n_kv_heads=width // 16,
        ffn_hidden=None,
        multiple_of=16,
        vocab_size=vocab_size,
        max_seq_len=seq_len,
        kernels=False,
    )


# Data: the same batches for every rung, and held-out text for the loss.


class ByteText:
    """UTF-8 bytes of JSONL(.gz) documents' ``text`` (vocabulary 256, no tokenizer to train).

    The last ``heldout_fraction`` of each document is held out, so every source is in both.
    """

    vocab_size = 256

    def __init__(self, paths: list[Path], heldout_fraction: float = 0.05) -> None:
        train, heldout = [], []
        for path in paths:
            for text in (doc.text for doc in read_documents(path)):
                data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
                cut = int(len(data) * (1 - heldout_fraction))
                train.append(data[:cut])
                heldout.append(data[cut:])
        if not train:
            raise ValueError(f"no documents in {[str(p) for p in paths]}")
        self.train = torch.from_numpy(np.concatenate(train).astype(np.int64))
        self.held = torch.from_numpy(np.concatenate(heldout).astype(np.int64))
        self.name = "bytes of " + ", ".join(p.name for p in paths)

    def batches(self, batch_size: int, seq_len: int, seed: int) -> Iterator[Batch]:
        """Random windows, in an order fixed by ``seed``."""
        g = torch.Generator().manual_seed(seed)
        while True:
            starts = torch.randint(0, len(self.train) - seq_len - 1, (batch_size,), generator=g)
            yield _windows(self.train, starts, seq_len)

    def heldout(self, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        return _heldout_batches(self.held, batch_size, seq_len, n)

    def close(self) -> None:
        pass


class ShardTokens:
    """A pretrain run's MDS token shards (llm-data's loader) and its held-out documents,
    encoded with the run's tokenizer."""

    def __init__(self, run_dir: Path) -> None:
        from llm_tokenize import Tokenizer

        self.shards = run_dir / "shards"
        stats = read_shard_stats(self.shards)
        self.tokenizer = Tokenizer.from_file(run_dir / "tokenizer.json")
        self.vocab_size = int(stats["vocab_size"])
        self.max_seq_len = int(stats["seq_len"])
        self.name = f"token shards of {run_dir} (vocab {self.vocab_size})"
        self._loader = None

    def batches(self, batch_size: int, seq_len: int, seed: int) -> Iterator[Batch]:
        from llm_data import build_loader

        if seq_len > self.max_seq_len:
            raise ValueError(f"seq_len {seq_len} > the shards' seq_len {self.max_seq_len}")
        self.close()  # streaming keeps one live dataset per folder
        self._loader = build_loader(self.shards, seq_len=seq_len, batch_size=batch_size, seed=seed)
        return iter(self._loader)

    def heldout(self, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        texts = [doc.text for doc in read_heldout(self.shards)]
        ids = []
        for encoded in self.tokenizer.encode_batch(texts):
            ids.extend([*encoded, self.tokenizer.eos_id])
        return _heldout_batches(torch.tensor(ids, dtype=torch.long), batch_size, seq_len, n)

    def close(self) -> None:
        if self._loader is not None:
            self._loader.close()
            self._loader = None


def _windows(ids: torch.Tensor, starts: torch.Tensor, seq_len: int) -> Batch:
    rows = torch.stack([ids[s : s + seq_len + 1] for s in starts.tolist()])
    return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}


def _heldout_batches(ids: torch.Tensor, batch_size: int, seq_len: int, n: int) -> list[Batch]:
    """``n`` batches of consecutive, non-overlapping windows from the start of ``ids``."""
    need = n * batch_size * (seq_len + 1)
    if len(ids) < need:
        raise ValueError(f"held-out text has {len(ids)} tokens, {n} batches need {need}")
    starts = torch.arange(n * batch_size) * (seq_len + 1)
    rows = _windows(ids, starts, seq_len)
    return [
        {k: v[i * batch_size : (i + 1) * batch_size] for k, v in rows.items()} for i in range(n)
    ]


# Training one rung.


@dataclass
class Rung:
    """One trained model of the ladder."""

    width: int
    n_layers: int
    params: int
    non_embedding_params: int
    steps: int
    tokens: int
    compute: float
    train_loss: float  # mean of the last 10% of steps
    eval_loss: float
    seconds: float


def train_rung(width: int, config: LadderConfig, data) -> Rung:
    """Train one rung for its budget on ``data``'s batches; held-out loss at the end."""
    model_config = rung_config(width, data.vocab_size, config.seq_len)
    torch.manual_seed(config.seed)
    model = Transformer(model_config)
    n = model.num_params(exclude_embeddings=True)
    per_step = config.batch_size * config.seq_len
    steps = max(1, round(config.tokens_per_param * n / per_step))
    train = TrainConfig(
        steps=steps, lr=config.lr, warmup_steps=max(1, steps // 10), schedule="cosine",
        precision="fp32", grad_clip=1.0, weight_decay=0.1, seed=config.seed,
    )  # fmt: skip
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, train)
    batches = data.batches(config.batch_size, config.seq_len, config.seed)
    losses, start = [], time.perf_counter()
    for _ in tqdm(range(steps), desc=f"d={width}", leave=False, mininterval=2):
        out = train_step(model, [next(batches)], optimizer, scheduler, train)
        losses.append(float(out["loss"]))
    seconds = time.perf_counter() - start
    data.close()
    tail = losses[-max(1, steps // 10) :]
    return Rung(
        width=width,
        n_layers=model_config.n_layers,
        params=model.num_params(),
        non_embedding_params=n,
        steps=steps,
        tokens=steps * per_step,
        compute=model.flops_per_token(config.seq_len) * steps * per_step,
        train_loss=sum(tail) / len(tail),
        eval_loss=evaluate(
            model, data.heldout(config.batch_size, config.seq_len, config.eval_batches)
        ),  # fmt: skip
        seconds=seconds,
    )


@torch.no_grad()
def evaluate(model: Transformer, batches: list[Batch]) -> float:
    """Mean cross-entropy (nats/token) over ``batches``."""
    model.eval()
    losses = [float(model(b["input_ids"], labels=b["labels"])["ce"]) for b in batches]
    model.train()
    return sum(losses) / len(losses)


# The ladder: rungs, fits, prediction.


@dataclass
class Prediction:
    """The target's predicted loss from one law, with its interval (and measurement)."""

    law: str
    x: float
    loss: float
    low: float | None
    high: float | None
    measured: float | None = None


@dataclass
class LadderResult:
    rungs: list[Rung]
    by_compute: PowerLaw
    by_params: PowerLaw
    target: Rung | None  # trained only with --check-target
    predictions: list[Prediction]
    target_width: int


def target_budget(config: LadderConfig, vocab_size: int) -> tuple[int, float]:
    """(non-embedding params, compute) of the target at the ladder's tokens-per-parameter rule,
    from the model built on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = Transformer(rung_config(config.target, vocab_size, config.seq_len))
    n = model.num_params(exclude_embeddings=True)
    per_step = config.batch_size * config.seq_len
    tokens = max(1, round(config.tokens_per_param * n / per_step)) * per_step
    return n, model.flops_per_token(config.seq_len) * tokens


def fit_and_predict(rungs: list[Rung], config: LadderConfig, vocab_size: int, target=None):
    """Fit loss against compute and against parameters; predict the target from each."""
    losses = [r.eval_loss for r in rungs]
    by_c = fit_power_law([r.compute for r in rungs], losses)
    by_n = fit_power_law([r.non_embedding_params for r in rungs], losses)
    n_t, c_t = target_budget(config, vocab_size)
    measured = target.eval_loss if target is not None else None
    predictions = []
    for law, fit, x in (("loss ~ a C^-b", by_c, c_t), ("loss ~ a N^-b", by_n, n_t)):
        low, high = fit.interval(x) if fit.n >= 3 else (None, None)
        predictions.append(Prediction(law, x, fit(x), low, high, measured))
    return LadderResult(rungs, by_c, by_n, target, predictions, config.target)


@contextlib.contextmanager
def _one_thread():
    """Rungs are tiny: their matmuls gain nothing from a second thread, which only waits for the
    first (the test ladder took 17 s on one thread, 108 s on two, 2-core machine under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_ladder(config: LadderConfig, data, check_target: bool = False) -> LadderResult:
    """Train every rung (and the target with ``check_target``), fit, predict (one thread)."""
    with _one_thread():
        return _run_ladder(config, data, check_target)


def _run_ladder(config: LadderConfig, data, check_target: bool) -> LadderResult:
    rungs = []
    for width in config.widths:
        rungs.append(train_rung(width, config, data))
        r = rungs[-1]
        log.info("d=%d: N=%d, %d steps, eval loss %.4f (%.0f s)", width,
                 r.non_embedding_params, r.steps, r.eval_loss, r.seconds)  # fmt: skip
    target = train_rung(config.target, config, data) if check_target else None
    return fit_and_predict(rungs, config, data.vocab_size, target)


# Output.


def _meta(config: LadderConfig, data_name: str) -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{cpu}, training on one torch thread"),
        ("load average (1, 5, 15 min)", f"{load} (a shared machine: times are not speeds)"),
        ("torch", torch.__version__),
        ("git", rev),
        ("data", data_name),
        ("config", json.dumps(asdict(config))),
    ]


def markdown(result: LadderResult, meta: list[tuple[str, str]]) -> str:
    lines = ["# Scaling ladder", ""] + [f"- {k}: {v}" for k, v in meta] + [""]
    lines += ["| width | layers | params | non-emb params N | steps | tokens | compute C (FLOPs) "
              "| train loss | eval loss | seconds |", "|" + " --- |" * 10]  # fmt: skip
    for r in [*result.rungs, *([result.target] if result.target else [])]:
        tag = " (target)" if r is result.target else ""
        lines.append(f"| {r.width}{tag} | {r.n_layers} | {r.params:,} | {r.non_embedding_params:,} "
                     f"| {r.steps:,} | {r.tokens:,} | {r.compute:.3e} | {r.train_loss:.4f} "
                     f"| {r.eval_loss:.4f} | {r.seconds:.0f} |")  # fmt: skip
    lines += ["", "Fits (eval loss, nats/token, least squares in log space over the rungs):", ""]
    for name, fit in (("C", result.by_compute), ("N", result.by_params)):
        lines.append(f"- loss = {fit.a:.4g} x {name}^-{fit.b:.4f} (residual std in log space "
                     f"{fit.s:.4f}, {fit.n} points)")  # fmt: skip
    lines += ["", f"Prediction for the target, width {result.target_width}, at its own budget:",
              "", "| law | at | predicted loss | 95% interval | measured | error |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for p in result.predictions:
        interval = f"{p.low:.4f} - {p.high:.4f}" if p.low is not None else "n/a (< 3 rungs)"
        measured = f"{p.measured:.4f}" if p.measured is not None else "not trained"
        error = f"{(p.loss - p.measured) / p.measured:+.2%}" if p.measured is not None else ""
        lines.append(f"| {p.law} | {p.x:.3e} | {p.loss:.4f} | {interval} | {measured} | {error} |")
    return "\n".join(lines) + "\n"


def csv_text(result: LadderResult, meta: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    buf.write("".join(f"# {k}: {v}\n" for k, v in meta))
    writer = csv.DictWriter(buf, fieldnames=[*Rung.__dataclass_fields__, "role"])
    writer.writeheader()
    for r in result.rungs:
        writer.writerow(asdict(r) | {"role": "rung"})
    if result.target is not None:
        writer.writerow(asdict(result.target) | {"role": "target"})
    return buf.getvalue()


def plot(result: LadderResult, path: Path, title: str) -> None:
    """Loss against compute and against parameters: rungs, fitted law, predicted target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pairs = ((result.by_compute, "compute C (FLOPs)", "compute"),
             (result.by_params, "non-embedding parameters N", "non_embedding_params"))  # fmt: skip
    for ax, pred, (fit, label, attr) in zip(axes, result.predictions, pairs, strict=True):
        xs = [getattr(r, attr) for r in result.rungs]
        ax.plot(xs, [r.eval_loss for r in result.rungs], "o", label="rungs (eval loss)")
        grid = np.geomspace(min(xs), pred.x * 1.2, 50)
        ax.plot(grid, [fit(x) for x in grid], "-", label=f"fit {fit.a:.3g} x^-{fit.b:.3f}")
        if pred.low is not None:
            err = [[pred.loss - pred.low], [pred.high - pred.loss]]
            ax.errorbar([pred.x], [pred.loss], yerr=err, fmt="s", capsize=4,
                        label="predicted target (95%)")  # fmt: skip
        if pred.measured is not None:
            ax.plot([pred.x], [pred.measured], "*", markersize=12, label="target, measured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out loss (nats/token)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


def write(result: LadderResult, meta: list[tuple[str, str]], out: Path) -> None:
    """``ladder.{md,csv,png}`` in ``out``, each written atomically."""
    atomic_write_text(out / "ladder.md", markdown(result, meta))
    atomic_write_text(out / "ladder.csv", csv_text(result, meta))
    plot(result, out / "ladder.png", dict(meta)["date"] + ", " + dict(meta)["data"])


def _data(args):
    if args.pretrain_run is None:
        return ByteText(SAMPLE_TEXT)
    run = args.pretrain_run.resolve()
    if not (run / "shards" / SHARD_STATS_FILE).is_file():
        from pretrain.cli import main as pretrain

        log.info("%s has no shards: running the pretrain stages curate, tokenizer, shards", run)
        stages = ["curate", "tokenizer", "shards"]
        overrides = [f"run.root={run.parent}", f"run.name={run.name}",
                     f"shards.seq_len={max(args.seq_len, 128)}"]  # fmt: skip
        rc = pretrain(stages + overrides)
        if rc:
            raise SystemExit(f"pretrain stages failed ({rc}) for {run}")
    return ShardTokens(run)


def _parser() -> argparse.ArgumentParser:
    d = LadderConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=d.widths, help="rung d_model")
    p.add_argument("--target", type=int, default=d.target, help="d_model to predict")
    p.add_argument("--check-target", action="store_true", help="train the target too")
    p.add_argument("--seq-len", type=int, default=d.seq_len)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--tokens-per-param", type=float, default=d.tokens_per_param)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-batches", type=int, default=d.eval_batches)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--pretrain-run", type=Path, help="a pretrain run directory (shards/)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = LadderConfig(
            widths=args.widths, target=args.target, seq_len=args.seq_len,
            batch_size=args.batch_size, tokens_per_param=args.tokens_per_param, lr=args.lr,
            eval_batches=args.eval_batches, seed=args.seed,
        )  # fmt: skip
    except ValueError as e:
        parser.error(str(e))
    data = _data(args)
    result = run_ladder(config, data, check_target=args.check_target)
    meta = _meta(config, data.name)
    write(result, meta, args.out)
    print(markdown(result, meta))
    log.info("wrote %s/ladder.{md,csv,png}", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
