"""``llm-eval run | distill | report``: score a model, distill a suite, tabulate results."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from llm_eval.distill import METHODS
from llm_formats.atomic import atomic_write_text
from llm_formats.device import resolve_device

CODE_TASKS = ("humaneval",)  # task names (not files) that `run --tasks` takes


def _run(args: argparse.Namespace) -> int:
    from llm_eval.adapters import load_model
    from llm_eval.suite import run_suite

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = resolve_device(args.device, cuda_available=cuda, setting="--device")
    loaded = load_model(args.model, args.model_arg, device=device)
    max_seq_len = min(args.max_seq_len or loaded.max_seq_len, loaded.max_seq_len)
    packed = False if args.no_pack else None
    files = [t for t in args.tasks if t not in CODE_TASKS]
    results = {}
    if files:
        results = run_suite(
            loaded.model,
            loaded.tokenizer,
            files,
            max_seq_len=max_seq_len,
            limit=args.limit,
            batch_size=args.batch_size,
            device=device,
            packed=packed,
            autocast=args.autocast,
            output_dir=args.output,
            metadata=loaded.metadata,
            generation={"batch_size": args.gen_batch_size, "compile": args.compile},
        )
    if "humaneval" in args.tasks:
        results["humaneval"] = _run_humaneval(args, loaded, merge=bool(files))
    print(json.dumps(results, indent=2))
    return 0


def _run_humaneval(args: argparse.Namespace, loaded, merge: bool) -> dict[str, float]:
    """HumanEval with the generation engine, each completion checked in the sandbox; writes
    ``humaneval.jsonl`` and the task's metrics into ``results.json`` (added to the one this
    command's task files just wrote when ``merge``)."""
    import time

    from llm_eval.generation import Sampling, generate_until
    from llm_eval.humaneval import evaluate_humaneval, load_humaneval
    from llm_eval.sandbox import SandboxConfig, isolation_available
    from llm_formats.eval_results import (
        read_summary,
        task_records_path,
        write_jsonl_records,
        write_summary,
    )

    if args.samples > 1 and args.temperature <= 0:
        raise ValueError(f"--samples {args.samples} with --temperature 0: all samples equal")
    sampling = Sampling(temperature=args.temperature, seed=args.seed)

    def generate(prompts: list[str], stop: list[str], max_tokens: int) -> list[str]:
        return generate_until(loaded, prompts, stop, max_tokens, sampling=sampling,
                              batch_size=args.gen_batch_size, compile=args.compile)  # fmt: skip

    sandbox = SandboxConfig(timeout_s=args.sandbox_timeout, cpu_s=max(1, int(args.sandbox_timeout)))
    start = time.perf_counter()
    metrics, records = evaluate_humaneval(
        generate, load_humaneval()[: args.limit], samples=args.samples, ks=args.pass_k,
        max_tokens=args.max_new_tokens, batch_size=args.batch_size, sandbox=sandbox,
        workers=args.sandbox_workers,
    )  # fmt: skip
    metrics["temperature"] = args.temperature
    out = Path(args.output)
    write_jsonl_records(task_records_path(out, "humaneval"), records)
    summary = {"metadata": loaded.metadata, "tasks": {}, "skipped": [], "seconds": {}}
    if merge:
        summary = read_summary(out)
    summary["tasks"]["humaneval"] = metrics
    summary["seconds"]["humaneval"] = round(time.perf_counter() - start, 3)
    summary["sandbox"] = isolation_available()
    write_summary(out, summary)
    return metrics


def _distill(args: argparse.Namespace) -> int:
    from llm_eval.distill import (
        distill,
        evaluate_subsets,
        read_results,
        write_distilled_tasks,
    )

    select = [read_results(d, args.metric) for d in args.select]
    out = Path(args.output)
    if args.heldout:
        heldout = [read_results(d, args.metric) for d in args.heldout]
        rows = evaluate_subsets(
            select, heldout, args.fractions, strata=args.strata, method=args.method
        )
        table = format_distill_table(rows, args.metric, len(select), len(heldout))
        atomic_write_text(out / "distill.md", table)
        atomic_write_text(out / "distill.json", json.dumps(rows, indent=2) + "\n")
        print(table)
    chosen = distill(select, args.keep, args.strata, args.method)
    for path in write_distilled_tasks(chosen, args.tasks, out):
        print(f"wrote {path}")
    return 0


def format_distill_table(rows, metric: str, n_select: int, n_heldout: int) -> str:
    lines = [
        f"Ranking of {n_heldout} held-out models (not used to choose items) by the mean over "
        f"tasks of `{metric}`: distilled subset vs full set. {n_select} models chose the items.",
        "",
        "| fraction | items | of | Kendall tau | Spearman | random: tau | random: Spearman |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['fraction']:.3f} | {r['items']} | {r['of']} | {r['kendall_tau']:.3f} | "
            f"{r['spearman']:.3f} | {r['random_kendall_tau']:.3f} | {r['random_spearman']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _report(args: argparse.Namespace) -> int:
    from llm_eval.report import plot_over_steps, results_table

    table, rows = results_table(args.results, args.metric)
    print(table)
    if args.output:
        atomic_write_text(Path(args.output), table)
    if args.plot:
        plot_over_steps(rows, args.metric, args.plot)
        print(f"wrote {args.plot}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llm-eval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="score a model on task files, write per-item results")
    run.add_argument(
        "--model",
        required=True,
        help="hf:<dir> (llm-eval[hf]) or <module>:<function> returning a LoadedModel, e.g. "
        "pretrain.stages:eval_model for our checkpoints",
    )
    run.add_argument("--model-arg", help="passed to <module>:<function> (e.g. a run directory)")
    run.add_argument(
        "--tasks", nargs="+", required=True,
        help="task .jsonl/.jsonl.gz files (zero-shot), YAML task files (llm_eval.task_spec), "
        "and/or `humaneval` (llm-eval[code]; completions run in llm_eval.sandbox)",
    )  # fmt: skip
    run.add_argument("--output", required=True, help="directory for <task>.jsonl, results.json")
    run.add_argument("--max-seq-len", type=int, default=0, help="0 = the model's")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--limit", type=int, default=None, help="first N items per task")
    run.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    run.add_argument("--autocast", action="store_true", help="bf16 autocast (GPU)")
    run.add_argument("--no-pack", action="store_true", help="one row per choice")
    run.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    run.add_argument("--gen-batch-size", type=int, default=16, help="prompts decoded together")
    run.add_argument("--compile", action="store_true", help="torch.compile generation (GPU)")
    run.add_argument("--samples", type=int, default=1, help="humaneval: completions per problem")
    run.add_argument("--temperature", type=float, default=0.0, help="humaneval: 0 = greedy")
    run.add_argument("--seed", type=int, default=0, help="humaneval: sampling seed")
    run.add_argument(
        "--pass-k", type=int, nargs="+", default=[1, 10, 100], help="humaneval: k of pass@k"
    )
    run.add_argument("--max-new-tokens", type=int, default=512, help="humaneval: per completion")
    run.add_argument(
        "--sandbox-timeout", type=float, default=10.0, help="humaneval: seconds per program"
    )
    run.add_argument(
        "--sandbox-workers", type=int, default=os.cpu_count() or 1,
        help="humaneval: programs checked at once (default: the CPU count)",
    )  # fmt: skip
    run.set_defaults(func=_run)

    dist = sub.add_parser("distill", help="choose a small item subset that keeps model ranks")
    dist.add_argument("--select", nargs="+", required=True, help="results dirs to choose with")
    dist.add_argument("--heldout", nargs="*", default=[], help="results dirs to check with")
    dist.add_argument("--tasks", nargs="+", required=True, help="the original task files")
    dist.add_argument("--output", required=True)
    dist.add_argument("--metric", default="logprob_per_byte", help="or acc, acc_norm, ...")
    dist.add_argument("--fractions", nargs="+", type=float, default=[0.02, 0.05, 0.1, 0.2])
    dist.add_argument("--keep", type=float, default=0.1, help="fraction in the task files")
    dist.add_argument("--method", choices=METHODS, default="match", help="how items are chosen")
    dist.add_argument("--strata", type=int, default=4, help="difficulty strata (method strata)")
    dist.set_defaults(func=_distill)

    rep = sub.add_parser("report", help="table (and plot) of results over checkpoints")
    rep.add_argument("results", nargs="+", help="results directories")
    rep.add_argument("--metric", default="acc_norm")
    rep.add_argument("--output", help="write the markdown table here")
    rep.add_argument("--plot", help="PNG of the metric over steps (llm-eval[plots])")
    rep.set_defaults(func=_report)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError, TypeError) as err:
        print(f"llm-eval: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
