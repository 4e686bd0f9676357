"""The benchmark's result files: Markdown with provenance, CSV, and plots."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path

import tokenizers

from llm_formats.atomic import atomic_write_text
from llm_tokenize.report import plot, to_csv, to_markdown


def machine() -> str:
    cpu = platform.processor() or "cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.split(",")[0].lower()).strip("-")


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _corpus_lines(ctx) -> list[str]:
    docs, held = ctx["docs"], ctx["held"]
    per = Counter(d.language or d.source for d in docs)
    mb = sum(len(d.text.encode("utf-8")) for d in docs) / 1e6
    not_nfc = sum(unicodedata.normalize("NFC", d.text) != d.text for d in docs)
    return [
        f"- corpus: {len(docs)} documents, {mb:.1f} MB of text ({ctx['read_s']:.0f} s to read; "
        "web pages extracted with llm-data's WARC reader and Trafilatura settings, cached)",
        "- documents per language / source: " + ", ".join(f"{k} {v}" for k, v in per.items()),
        f"- statistics on the held-out fifth ({len(held)} documents); tokenizers train on the "
        "rest, mixed web 0.5 / books 0.25 / code 0.25 by bytes (small sources repeated)",
        f"- documents not in NFC: {not_nfc} (NFC is off: every document must round-trip as is)",
    ]


def _speed_lines(ctx) -> list[str]:
    cores = os.cpu_count()
    speed = next(iter(ctx["speed"].values()))
    lines = [
        "## Training time and encode throughput", "",
        f"Encode: {speed['mb']:.1f} MB of held-out text (up to 150 kB per language / source), "
        f"`encode_batch` on Rust threads ({cores} cores), on one thread, and in {cores} "
        "single-threaded processes that send the ids back. Wall-clock MB/s, and MB per "
        "CPU-second (= MB/s per core; less distorted by the other jobs on this machine).", "",
        "| tokenizer | training s | training MB | threads MB/s | threads MB/cpu-s | one thread "
        f"MB/s | one thread MB/cpu-s | {cores} processes MB/s | processes MB/cpu-s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    base, base_s = ctx["base"]
    gpt4_mid = "gpt4-" + base.rsplit("-", 1)[1]  # the baseline trained on its text
    for name, s in ctx["speed"].items():
        card = ctx["trained"][gpt4_mid if name == base else name]["card"]
        seconds = base_s if name == base else card["training"]["seconds"]
        mb = card["training"]["bytes"] / 1e6
        cells = [f"{s[f'{m}_mb_s']:.2f} | {s[f'{m}_mb_cpu_s']:.2f}"
                 for m in ("threads", "one_thread", "processes")]  # fmt: skip
        lines.append(f"| {name} | {seconds:.1f} | {mb:.1f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training time of every tokenizer (s): "
        + ", ".join(
            f"{n} {t['card']['training']['seconds']:.1f}" for n, t in ctx["trained"].items()
        ),
    ]
    return lines + [""]


def _round_trip_lines(ctx, rows) -> list[str]:
    lines = ["## Round trip", "",
             "decode(encode(text)) == text byte for byte: every document of the corpus (train "
             "and held out) for the tokenizers below; every held-out document for all of them "
             "(the round-trip lines under each vocabulary size).", "",
             "| tokenizer | documents | differ |", "| --- | ---: | ---: |"]  # fmt: skip
    for name, (n, failed, examples) in ctx["trips"].items():
        lines.append(f"| {name} | {n} | {failed}{f' e.g. {examples}' if failed else ''} |")
    held_failed = sum(r["round_trip_failures"] for r in rows if r["kind"] == "source")
    lines += ["", f"Held-out documents that differ, over all tokenizers: {held_failed}."]
    return lines + [""]


def write_results(rows, ctx, sizes: list[str]) -> Path:
    args = ctx["args"]
    name = slug(machine())
    before, after = ctx["load"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Tokenizer benchmark", "",
        f"- date: {now}; git {git_revision()}; tokenizers {tokenizers.__version__}",
        f"- machine: {machine()}, SHARED with other jobs: load average (1, 5, 15 min) "
        f"{_load(before)} before, {_load(after)} after; timings are noisy and low",
        f"- command: `python -m benchmarks.tokenize.bench_tokenize --corpus <corpus> "
        f"--vocab-sizes {' '.join(map(str, args.vocab_sizes))} --budget-mb {args.budget_mb:g}`",
        *_corpus_lines(ctx), "",
        *_speed_lines(ctx), *_round_trip_lines(ctx, rows),
    ]  # fmt: skip
    for vocab, size in zip(args.vocab_sizes, sizes, strict=True):
        suffix = f"-{size}"
        mine = [r for r in rows if r["tokenizer"].endswith(suffix)]
        lines += [f"## Vocabulary {vocab} (held-out documents)", "", to_markdown(mine)]
        plot(mine, args.out / f"tokenize-{name}{suffix}.png")
    atomic_write_text(args.out / f"tokenize-{name}.csv", to_csv(rows))
    summary_plot(rows, args.vocab_sizes, sizes, args.out / f"tokenize-{name}-by-size.png")
    return atomic_write_text(args.out / f"tokenize-{name}.md", "\n".join(lines) + "\n")


def _load(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def summary_plot(rows, vocab_sizes, sizes, path: Path) -> None:
    """Bytes/token of web, books and code against vocabulary size, one line per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = ["web", "books", "code"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    presets = list(dict.fromkeys(r["tokenizer"].rsplit("-", 1)[0] for r in rows))
    for ax, source in zip(axes, sources, strict=True):
        for preset in presets:
            ys = {r["tokenizer"]: r["bytes_per_token"] for r in rows
                  if r["kind"] == "source" and r["group"] == source}  # fmt: skip
            points = [(v, ys[f"{preset}-{s}"]) for v, s in zip(vocab_sizes, sizes, strict=True)
                      if f"{preset}-{s}" in ys]  # fmt: skip
            ax.plot(*zip(*points, strict=True), marker="o", label=preset)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{source} (held out)")
        ax.set_xlabel("vocabulary size")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bytes / token")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
