"""Loader throughput: llm-data's mixture loader next to a plain StreamingDataset, same shards.

Tokens per second in one process: samples read x (seq_len + 1) tokens (the shards' sample
length) per second of wall time, after the first batch (dataset build and shard opening are not
counted); also per second of CPU time of the process (all its threads), which a loaded shared
machine disturbs less than wall time. Medians of `--repeats` runs, interleaved. Rows:

- `streaming` : iterate a plain `streaming.StreamingDataset` (one Stream per source, shuffled),
  reading each sample's `tokens` array, with streaming's defaults;
- `streaming ahead`: the same with the loader's read-ahead (`predownload=4096` samples instead
  of 8 batches), to separate that setting's gain from the memory-mapped reads;
- `loader`    : `llm_data.build_loader`, by size (every sample once per epoch), batches of
  `--batch-size` as int64 tensors (input_ids / labels views);
- `loader mix`: the same with proportions and epochs (`Stream(choose=...)`);
- `loader short`: the same with a sequence-length schedule that cuts every sample into 4 rows.

Shards: `--shards DIR` (a `tokenize_to_shards` output, e.g. `runs/sample/shards`), else the
shipped books and code (data/sample) tokenized one byte per token (`--copies` times, so an epoch
takes a few seconds) into a temporary folder. Writes `benchmarks/data/results/loader-<cpu>.{md,
csv,png}` headed with the date, machine, load average and git revision; the machine may be
shared, so the table says how loaded it was.

    uv run python -m benchmarks.data.bench_loader --seq-len 2048 --samples 6000
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, device_name, device_slug, header, write_atomic
from llm_formats.documents import read_documents, write_documents
from llm_formats.shards import read_shard_stats

RESULTS = Path(__file__).resolve().parent / "results"
PREDOWNLOAD = 4096  # llm_data.training_data.loader.PREDOWNLOAD
SAMPLE = ROOT / "data" / "sample"


class ByteTokenizer:
    """One token per UTF-8 byte (ids 0-255) and EOS 256: enough to fill shards with real text."""

    eos_id, vocab_size = 256, 257

    def encode_batch(self, texts):
        return [list(t.encode("utf-8")) for t in texts]


def sample_shards(out: Path, seq_len: int, copies: int) -> Path:
    """Books and code of data/sample as curated JSONL, `copies` times, tokenized to MDS."""
    from llm_data import tokenize_to_shards

    curated = out / "curated"
    for source, name in (("books", "shakespeare"), ("code", "python-stdlib")):
        (curated / source).mkdir(parents=True)
        docs = list(read_documents(SAMPLE / source / f"{name}.jsonl.gz"))
        write_documents(
            curated / source / "00000.jsonl.gz",
            ({"id": f"{copy}-{d.id}", "text": d.text} for copy in range(copies) for d in docs),
        )
    shards = out / "shards"
    tokenize_to_shards(curated, ByteTokenizer(), shards, seq_len=seq_len, heldout_fraction=0.0)
    return shards


class _Clock:
    """Wall and CPU time (all threads of this process: streaming reads ahead in threads)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, samples: int) -> tuple[float, float]:
        """(samples per wall second, samples per CPU second)."""
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return samples / wall, samples / cpu


def time_streaming(
    shards: Path, sources: list[str], batch_size: int, n_samples: int, predownload=None
) -> float:
    """Samples per second of a plain shuffled StreamingDataset (all sources once per epoch).

    `batch_size` as the loader's: streaming sizes its read-ahead by it (8 batches) unless
    `predownload` is given."""
    from streaming import Stream, StreamingDataset

    streams = [Stream(local=str(shards / s)) for s in sources]
    dataset = StreamingDataset(
        streams=streams,
        shuffle=True,
        shuffle_seed=0,
        batch_size=batch_size,
        predownload=predownload or 8 * batch_size,
    )
    try:
        it, read = iter(dataset), 0
        next(it)  # build, open shards
        clock = _Clock()
        while read < n_samples:
            for sample in it:
                sample["tokens"]
                read += 1
                if read == n_samples:
                    break
            else:
                it = iter(dataset)
        return clock.rates(n_samples)
    finally:
        dataset._iterator.exit()


def time_loader(shards: Path, seq_len: int, batch_size: int, n_samples: int, **kw) -> float:
    """Samples per second of `build_loader` batches (`kw`: its mixture arguments)."""
    from llm_data import build_loader

    loader = build_loader(shards, seq_len=seq_len, batch_size=batch_size, seed=0, **kw)
    try:
        it = iter(loader)
        next(it)
        batches = n_samples // batch_size
        clock = _Clock()
        for _ in range(batches):
            next(it)
        return clock.rates(batches * batch_size)
    finally:
        loader.close()


def measure(args, shards: Path, seq_len: int) -> list[dict]:
    from llm_data.training_data.mixture import MixtureConfig, SeqLenPhase

    stats = read_shard_stats(shards)
    sources = [s for s, st in stats["sources"].items() if st["samples"] > 0]
    sample_len = stats["seq_len"] + 1
    mega = sample_len / 1e6
    # The first source upsampled to 2 epochs, the others share the rest of twice the samples.
    first, *rest = sources
    total = sum(stats["sources"][s]["samples"] for s in sources)
    mix = MixtureConfig(proportions=dict.fromkeys(rest, 1.0), epochs={first: 2.0})
    short = MixtureConfig(seq_len_schedule=[SeqLenPhase(until_step=10**9, seq_len=seq_len // 4)])
    steps = 2 * total // args.batch_size
    cases = {
        "streaming": lambda: time_streaming(shards, sources, args.batch_size, args.samples),
        "streaming ahead": lambda: time_streaming(
            shards, sources, args.batch_size, args.samples, predownload=PREDOWNLOAD
        ),
        "loader": lambda: time_loader(shards, seq_len, args.batch_size, args.samples),
        "loader mix": lambda: time_loader(
            shards, seq_len, args.batch_size, args.samples, mixture=mix, steps=steps
        ),
        "loader short": lambda: time_loader(
            shards, seq_len, args.batch_size, args.samples, mixture=short
        ),
    }
    rates = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every reader alike
        for name, run in cases.items():
            rates[name].append(run())
            wall, cpu = rates[name][-1]
            print(name, f"{wall * mega:.2f}M tokens/s, {cpu * mega:.2f}M per CPU-s", flush=True)
    rows = []
    for name, pairs in rates.items():
        walls, cpus = [w for w, _ in pairs], [c for _, c in pairs]
        rate = statistics.median(walls)
        rows.append(
            {
                "reader": name,
                "seq_len": seq_len,
                "batch_size": args.batch_size,
                "samples/s": round(rate),
                "tokens/s": round(rate * sample_len),
                "spread (M tokens/s)": f"{min(walls) * mega:.2f}-{max(walls) * mega:.2f}",
                "tokens/CPU-s": round(statistics.median(cpus) * sample_len),
            }
        )
    return rows


def write_results(rows: list[dict], info: list[tuple[str, str]], slug: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    head = "\n".join(f"- {k}: {v}" for k, v in info)
    cols = list(rows[0])
    table = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    table += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    md = f"# Loader throughput, one process\n\n{head}\n\n" + "\n".join(table) + "\n"
    write_atomic(RESULTS / f"loader-{slug}.md", md)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(RESULTS / f"loader-{slug}.csv", buf.getvalue())
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"{r['reader']} ({r['seq_len']})" for r in rows][::-1]
    ax.barh(labels, [r["tokens/s"] / 1e6 for r in rows][::-1])
    ax.set_xlabel("million tokens / s, one process (reader (seq_len))")
    ax.set_title(dict(info)["device"], fontsize=8)
    fig.tight_layout()
    tmp = RESULTS / f".loader-{slug}.png.tmp.png"
    fig.savefig(tmp, dpi=120)
    tmp.replace(RESULTS / f"loader-{slug}.png")
    print(md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, help="a tokenize_to_shards folder (default: sample)")
    parser.add_argument("--seq-len", type=int, nargs="+", default=[2048], help="one row set each")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=6000, help="samples timed per case")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--copies", type=int, default=4, help="copies of the sample text")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one process, one core: what a data-loading worker gets
    load_before = os.getloadavg()
    rows = []
    for seq_len in args.seq_len:
        with tempfile.TemporaryDirectory() as tmp:
            shards = args.shards or sample_shards(Path(tmp), seq_len, args.copies)
            rows += measure(args, shards, seq_len)
    load_after = os.getloadavg()
    machine = f"{device_name(torch.device('cpu'))}, {os.cpu_count()} cores"
    info = [
        *header(machine),
        (
            "shards",
            str(args.shards or f"data/sample books + code, 1 byte = 1 token, x{args.copies}"),
        ),
        ("load average (1, 5, 15 min) before", ", ".join(f"{x:.2f}" for x in load_before)),
        ("load average after", ", ".join(f"{x:.2f}" for x in load_after)),
        ("note", "a shared machine: other jobs ran at the same time (see the load)"),
    ]
    write_results(rows, info, device_slug(torch.device("cpu")))


if __name__ == "__main__":
    main()
