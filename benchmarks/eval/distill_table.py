"""Distillation table: subset size vs Kendall tau / Spearman on models not used to choose it.

1. Scores every checkpoint under ``--runs`` (``<run>/checkpoints/step_*``) on the full task
   files with llm-eval, writing per-item results to ``--work`` (kept: a second call only scores
   new checkpoints).
2. Splits the models into selection and held-out models, two ways: interleaved (every other
   model, ordered by run and step) and by run (``--heldout-runs`` are held out, so the subset
   is checked on model sizes it never saw).
3. For each split and metric, `llm_eval.distill.evaluate_subsets` at several fractions, and
   writes ``benchmarks/eval/results/distill.md`` plus the 10 % subset chosen with all models
   as task files in ``benchmarks/eval/results/distilled/``.

    uv run python benchmarks/eval/distill_table.py --runs runs/sample runs/small runs/tiny \
        --heldout-runs runs/small runs/tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import ROOT, device_name, header, write_atomic  # noqa: E402

TASKS = ["arc_easy", "hellaswag", "lambada", "piqa", "sciq"]
FRACTIONS = [0.02, 0.05, 0.1, 0.2, 0.5]
METRICS = ["logprob_per_byte", "acc_norm"]


def _complete(out: Path, tasks: list[Path], limit: int | None) -> bool:
    """Whether ``out`` has results for every task, with at least ``limit`` items each."""
    path = out / "results.json"
    if not path.is_file():
        return False
    done = json.loads(path.read_text())["tasks"]
    names = [p.name.removesuffix(".jsonl.gz") for p in tasks]
    return all(t in done and done[t]["n"] + done[t]["skipped"] >= (limit or 0) for t in names)


def score_checkpoints(
    runs: list[Path], tasks: list[Path], work: Path, limit: int | None
) -> list[Path]:
    """Results directory per checkpoint (scored here unless it already has them all)."""
    from llm_eval import run_suite
    from pretrain.stages import eval_model

    dirs = []
    for run in runs:
        for ckpt in sorted((run / "checkpoints").glob("step_*")):
            if not (ckpt / "manifest.json").is_file():
                continue  # still being written
            out = work / f"{run.name}-{ckpt.name}"
            if not _complete(out, tasks, limit):
                loaded = eval_model(str(ckpt))
                print(f"scoring {ckpt}", flush=True)
                run_suite(
                    loaded.model,
                    loaded.tokenizer,
                    tasks,
                    max_seq_len=loaded.max_seq_len,
                    limit=limit,
                    batch_size=32,
                    output_dir=out,
                    metadata={**loaded.metadata, "run": run.name},
                    progress=False,
                )
            dirs.append(out)
    return dirs


def _verdict(rows) -> str:
    """Whether the target (under 10 % of the items, Kendall tau >= 0.9) is met, and how random
    subsets of that size do."""
    met = [r for r in rows if r["fraction"] < 0.1 and r["kendall_tau"] >= 0.9]
    if not met:
        return "Target (< 10 % of items, tau >= 0.9 on held-out models): **not met**."
    r = met[0]
    return (
        f"Target (< 10 % of items, tau >= 0.9 on held-out models): met with {r['items']} of "
        f"{r['of']} items (tau {r['kendall_tau']:.3f}; random subsets of that size: "
        f"{r['random_kendall_tau']:.3f})."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--heldout-runs", nargs="*", type=Path, default=[])
    parser.add_argument("--work", type=Path, default=Path("runs/distill-results"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="items per task")
    parser.add_argument("--score-only", action="store_true", help="score new checkpoints only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from llm_eval.cli import format_distill_table
    from llm_eval.distill import distill, evaluate_subsets, read_results, write_distilled_tasks

    tasks = [ROOT / "data" / "sample" / "eval" / f"{t}.jsonl.gz" for t in TASKS]
    dirs = score_checkpoints(args.runs, tasks, args.work, args.limit)
    if args.score_only:
        return 0
    held_names = {r.name for r in args.heldout_runs}
    sections = []
    for metric in METRICS:
        models = [read_results(d, metric) for d in dirs]
        runs = [m.metadata.get("run") for m in models]
        splits = {"interleaved": (models[0::2], models[1::2])}
        if held_names:
            splits["by run"] = (
                [m for m, r in zip(models, runs, strict=True) if r not in held_names],
                [m for m, r in zip(models, runs, strict=True) if r in held_names],
            )
        for split, (select, heldout) in splits.items():
            rows = evaluate_subsets(select, heldout, FRACTIONS)
            sections += [f"### {metric}, {split} split", ""]
            sections += [format_distill_table(rows, metric, len(select), len(heldout))]
            sections += [_verdict(rows), ""]
    models = [read_results(d, METRICS[0]) for d in dirs]
    out = ROOT / "benchmarks" / "eval" / "results"
    written = write_distilled_tasks(distill(models, 0.1), tasks, out / "distilled")
    listing = ", ".join(f"`{p.relative_to(ROOT)}`" for p in written)
    meta = header(device_name(torch.device("cpu")), [("load average", str(os.getloadavg()))])
    names = ", ".join(f"{m.metadata.get('run')}@{m.metadata.get('step')}" for m in models)
    text = "\n".join(
        [
            "# Distilled suites: subset size vs rank agreement on held-out models",
            "",
            *[f"- {k}: {v}" for k, v in meta],
            f"- {len(models)} models (run@step): {names}",
            f"- tasks: {', '.join(TASKS)} (data/sample/eval, the first {args.limit or 200} "
            "items of each); items a model skipped (too long) are left out of every model's set",
            "- `random`: mean over 50 random subsets of the same size per task (nan: every "
            "model scored the same on the subset, so no ranking; such draws are left out)",
            f"- 10 % subsets chosen with all models: {listing}",
            "",
            *sections,
        ]
    )
    write_atomic(out / "distill.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
