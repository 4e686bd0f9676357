"""The whole eval suite, timed: a preset model (random weights: speed does not depend on them)
scores every item of every task file in a folder, as `llm-eval run` would.

Issue target: on one H100, the eight multiple-choice tasks plus lambada (about 19,500 items)
in under 20 s for the ``gpt2-124m`` preset, bf16. The tokenizer is the sample run's
(``runs/sample/tokenizer.json``, 4,096 tokens) unless ``--tokenizer`` names another; a small
vocabulary cuts text into more tokens than GPT-2's 50k, so the time is an upper bound for a
GPT-2 tokenizer. The model keeps the preset's vocabulary (the output head costs what it would).

    python -m benchmarks.eval.bench_suite --tasks-dir <eval task folder> --preset gpt2-124m
    python -m benchmarks.eval.bench_suite --preset debug --limit 20      # CPU smoke run

Writes ``benchmarks/eval/results/suite-<device>.md`` (or ``--out``): items, requests, tokens,
seconds per task (scoring) and in all (tokenization included), items/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, device_name, device_slug, header, parse_preset, write_atomic
from llm_formats import rundir as layout
from llm_formats.device import resolve_device
from llm_formats.eval_results import read_summary

TARGET_SECONDS = 20.0  # the H100 target for gpt2-124m


def load_tokenizer(path: str | None):
    try:
        from llm_tokenize import Tokenizer
    except ImportError as err:  # the GPU image has no tokenizers: carry its wheel in .whl/
        raise SystemExit(f"bench_suite: llm_tokenize needs the `tokenizers` wheel ({err})") from err
    path = Path(path) if path else layout.run_dir(ROOT / "runs", "sample") / layout.TOKENIZER
    if not path.is_file():
        raise SystemExit(f"bench_suite: no tokenizer at {path} (run `uv run pretrain` or pass one)")
    return Tokenizer.from_file(path)


def build_model(preset: str, vocab_size: int, device: torch.device):
    """The preset (``name[:field=value,...]``) with at least the tokenizer's vocabulary."""
    from llm_model import Transformer, get_preset

    name, overrides = parse_preset(preset)
    vocab = overrides.get("vocab_size", get_preset(name).vocab_size)
    config = get_preset(name, **{**overrides, "vocab_size": max(vocab, vocab_size)})
    torch.manual_seed(0)
    return Transformer(config).to(device).eval(), config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks-dir", default=str(ROOT / "data" / "sample" / "eval"))
    parser.add_argument("--preset", default="gpt2-124m", help="llm_model preset[:field=value,...]")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer.json (default: the sample run's)"
    )
    parser.add_argument("--limit", type=int, default=None, help="items per task")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    parser.add_argument("--no-autocast", action="store_true", help="fp32 on GPU too")
    parser.add_argument(
        "--out", default=None, help="result file (default: results/suite-<device>.md)"
    )
    args = parser.parse_args()

    from llm_eval import run_suite

    device = torch.device(resolve_device(args.device, cuda_available=torch.cuda.is_available()))
    autocast = device.type == "cuda" and not args.no_autocast
    paths = sorted(Path(args.tasks_dir).glob("*.jsonl*"))
    if not paths:
        raise SystemExit(f"bench_suite: no task files (*.jsonl, *.jsonl.gz) in {args.tasks_dir}")
    tokenizer = load_tokenizer(args.tokenizer)
    model, config = build_model(args.preset, tokenizer.vocab_size, device)
    kw = dict(max_seq_len=config.max_seq_len, batch_size=args.batch_size, device=device,
              autocast=autocast, progress=False)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run_suite(model, tokenizer, paths[:1], limit=8, output_dir=Path(tmp) / "warm", **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        metrics = run_suite(model, tokenizer, paths, limit=args.limit, output_dir=tmp, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        summary = read_summary(tmp)
        counts = _counts(Path(tmp), metrics)
    items = sum(int(m["n"]) for m in metrics.values())
    skipped = sum(int(m["skipped"]) for m in metrics.values())
    rows = [
        "| task | items | skipped | requests | scored tokens | seconds (scoring) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {t} | {int(m['n'])} | {int(m['skipped'])} | {counts[t][0]} | {counts[t][1]} | "
            f"{summary['seconds'][t]:.2f} |"
            for t, m in metrics.items()
        ],
    ]
    name = device_name(device)
    params = sum(p.numel() for p in model.parameters())
    at_target = args.preset == "gpt2-124m" and not args.limit and device.type == "cuda"
    verdict = ("met" if seconds < TARGET_SECONDS else "**not met**") if at_target else "n/a"
    text = "\n".join(
        [
            f"# The eval suite on {name}",
            "",
            *[f"- {k}: {v}" for k, v in header(name)],
            f"- model: preset `{args.preset}` ({params / 1e6:.1f}M parameters, random weights), "
            f"max_seq_len {config.max_seq_len}, {'bf16 autocast' if autocast else 'fp32'}, "
            f"batch size {args.batch_size}; tokenizer vocabulary {tokenizer.vocab_size}",
            f"- task files: {len(paths)} from `{Path(args.tasks_dir).name}`"
            + (f", first {args.limit} items each" if args.limit else ""),
            "",
            f"**{items} items ({skipped} skipped as too long) in {seconds:.1f} s: "
            f"{items / seconds:.0f} items/s** (tokenization included; target for gpt2-124m, "
            f"every item, on an H100: {TARGET_SECONDS:.0f} s; here: {verdict})",
            "",
            *rows,
            "",
        ]
    )
    out = Path(args.out) if args.out else (
        ROOT / "benchmarks" / "eval" / "results" / f"suite-{device_slug(device)}.md"
    )  # fmt: skip
    write_atomic(out, text)
    print(text)
    print(f"wrote {out}")
    return 0


def _counts(out_dir: Path, metrics: dict) -> dict[str, tuple[int, int]]:
    """(requests, scored tokens) per task from its per-item file."""
    counts = {}
    for task in metrics:
        requests = tokens = 0
        for line in (out_dir / f"{task}.jsonl").read_text().splitlines():
            r = json.loads(line)
            if "skipped" in r:
                continue
            per_choice = r["tokens"] if isinstance(r["tokens"], list) else [r["tokens"]]
            requests += len(per_choice)
            tokens += sum(per_choice)
        counts[task] = (requests, tokens)
    return counts


if __name__ == "__main__":
    sys.exit(main())
