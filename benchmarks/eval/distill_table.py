"""Distillation table: subset size vs Kendall tau / Spearman on models not used to choose it.

1. Scores every checkpoint under ``--runs`` (``<run>/checkpoints/step_*``, e.g. the ladder of
   ``train_ladder.py``) on the task files with llm-eval, one CPU thread, writing per-item
   results to ``--work`` (kept: a second call only scores what is new).
2. Splits the models into selection and held-out models: interleaved (every other model,
   ordered by run and step) and, per ``--heldout-runs`` group, by run (those runs' checkpoints
   are held out, so the subset is checked on model sizes it never saw). Also a check on the
   selection runs alone (each left out in turn), which is what the default method was chosen by.
3. Per split and metric, `llm_eval.distill.evaluate_subsets` for each selection method and
   random subsets, at several fractions; writes ``distill.md`` and ``distill.png`` to
   ``--out``, and the ``--keep`` subset chosen with all models as task files in
   ``<out>/distilled/``.

With ``$EVAL`` the folder of the eval task files (default: the ``data/sample/eval`` slices):

    uv run python -m benchmarks.eval.train_ladder
    uv run python -m benchmarks.eval.distill_table --runs runs/ladder-s? --limit 500 \\
        --tasks $EVAL/{arc_challenge,arc_easy,hellaswag,lambada}.jsonl.gz \\
                $EVAL/{openbookqa,piqa,sciq,socialiqa}.jsonl.gz \\
        --heldout-runs ladder-s2,ladder-s4 ladder-s4,ladder-s5 ladder-s1,ladder-s3,ladder-s5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import ROOT, device_name, header, write_atomic
from llm_formats.checkpoint import MANIFEST, step_dirs
from llm_formats.eval_results import RESULTS_FILE, read_summary

FRACTIONS = [0.02, 0.05, 0.08, 0.1, 0.2]
METRICS = ["logprob_per_byte", "acc_norm"]
TARGET = "under 10 % of the items with Kendall tau >= 0.9 on held-out models"


def _task_name(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".jsonl")


def _complete(out: Path, expected: dict[str, int]) -> bool:
    """Whether ``out`` has results for every task, with the ``expected`` items each."""
    if not (out / RESULTS_FILE).is_file():
        return False
    done = read_summary(out)["tasks"]
    return all(t in done and done[t]["n"] + done[t]["skipped"] >= n for t, n in expected.items())


def score_checkpoints(
    runs: list[Path], tasks: list[Path], work: Path, limit: int | None
) -> list[Path]:
    """Results directory per checkpoint (scored here unless it already has them all)."""
    from llm_eval import load_tasks, run_suite
    from pretrain.stages import eval_model

    # items per task: the first ``limit``, or all of a shorter task
    expected = {items[0].task: len(items[:limit]) for items in map(load_tasks, tasks) if items}
    dirs = []
    for run in runs:
        for ckpt in reversed(step_dirs(run / "checkpoints")):  # oldest first
            if not (ckpt / MANIFEST).is_file():
                continue  # still being written
            out = work / f"{run.name}-{ckpt.name}"
            if not _complete(out, expected):
                loaded = eval_model(str(ckpt))
                config = loaded.model.config
                print(f"scoring {ckpt}", flush=True)
                run_suite(
                    loaded.model,
                    loaded.tokenizer,
                    tasks,
                    max_seq_len=loaded.max_seq_len,
                    limit=limit,
                    batch_size=32,
                    output_dir=out,
                    metadata={
                        **loaded.metadata,
                        "run": run.name,
                        "d_model": config.d_model,
                        "n_layers": config.n_layers,
                    },
                    progress=False,
                )
            dirs.append(out)
    return dirs


def evaluate_all(select, heldout, methods) -> list[dict]:
    """One row per fraction: tau / Spearman per method, and of random subsets."""
    from llm_eval.distill import evaluate_subsets

    rows = []
    for method in methods:
        draws = 50 if method == methods[0] else 0  # random subsets do not depend on the method
        for k, r in enumerate(evaluate_subsets(select, heldout, FRACTIONS, method=method,
                                               random_draws=draws)):  # fmt: skip
            if k == len(rows):
                rows.append({key: r[key] for key in ("fraction", "items", "of")})
                rows[k]["random"] = (r["random_kendall_tau"], r["random_spearman"])
            rows[k][method] = (r["kendall_tau"], r["spearman"])
    return rows


def format_rows(rows, methods) -> list[str]:
    cols = [*methods, "random"]
    head = "| fraction | items | of | " + " | ".join(f"{c}: tau | {c}: Spearman" for c in cols)
    lines = [head + " |", "| " + " | ".join(["---:"] * (3 + 2 * len(cols))) + " |"]
    for r in rows:
        cells = [f"{r['fraction']:.2f}", str(r["items"]), str(r["of"])]
        cells += [f"{v:.3f}" for c in cols for v in r[c]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdict(rows, method: str) -> str:
    met = [r for r in rows if r["items"] < 0.1 * r["of"] and r[method][0] >= 0.9]
    if not met:
        return f"`{method}`: target ({TARGET}) **not met**."
    r = met[0]
    return (
        f"`{method}`: target ({TARGET}) met with {r['items']} of {r['of']} items "
        f"(fraction {r['fraction']:.2f}: tau {r[method][0]:.3f}; random subsets of that size: "
        f"{r['random'][0]:.3f})."
    )


def splits(models, groups: list[set[str]]) -> dict[str, tuple[list, list]]:
    """Selection / held-out models: interleaved, then one split per held-out run group."""
    out = {"interleaved": (models[0::2], models[1::2])}
    for group in groups:
        run = [m.metadata["run"] for m in models]
        select = [m for m, r in zip(models, run, strict=True) if r not in group]
        heldout = [m for m, r in zip(models, run, strict=True) if r in group]
        out[f"by run: {', '.join(sorted(group))} held out"] = (select, heldout)
    return out


def unresolved_pairs(models) -> tuple[int, int]:
    """(pairs of models whose full-set suite scores differ by less than 2 standard errors of
    the difference, all pairs): the noise floor of the reference ranking itself. The standard
    error is that of the mean over tasks of per-item paired differences."""
    from llm_eval.distill import score_matrix

    tasks = sorted(set.intersection(*(set(m.scores) for m in models)))
    matrices = [score_matrix(models, t)[1] for t in tasks]
    close = pairs = 0
    for a in range(len(models)):
        for b in range(a + 1, len(models)):
            diffs = [m[a] - m[b] for m in matrices]
            mean = np.mean([d.mean() for d in diffs])
            se = np.sqrt(sum(d.var(ddof=1) / len(d) for d in diffs)) / len(diffs)
            close += abs(mean) < 2 * se
            pairs += 1
    return close, pairs


def inner_check(select, methods) -> list[dict]:
    """Each selection run left out in turn (chosen on the other selection runs, checked on it);
    per fraction the mean tau over those folds: a choice of method that never sees the
    held-out models."""
    runs = sorted({m.metadata["run"] for m in select})
    folds = [
        evaluate_all(
            [m for m in select if m.metadata["run"] != r],
            [m for m in select if m.metadata["run"] == r],
            methods,
        )
        for r in runs
    ]
    rows = []
    for k, row in enumerate(folds[0]):
        mean = {c: tuple(np.nanmean([f[k][c] for f in folds], 0)) for c in [*methods, "random"]}
        rows.append({**{key: row[key] for key in ("fraction", "items", "of")}, **mean})
    return rows


def summary(curves: dict[str, list[dict]], methods: list[str]) -> list[str]:
    """Per split, Kendall tau at each fraction under 0.1, per method and random."""
    cols = [*methods, "random"]
    fractions = [f for f in FRACTIONS if f < 0.1]
    head = " | ".join(f"{c} @{f:g}" for f in fractions for c in cols)
    lines = [f"| split | {head} |", "| --- |" + " ---: |" * (len(cols) * len(fractions))]
    for split, rows in curves.items():
        by_fraction = {r["fraction"]: r for r in rows}
        cells = [f"{by_fraction[f][c][0]:.3f}" for f in fractions for c in cols]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def best_method(rows: list[dict], methods: list[str]) -> str:
    """The method with the highest mean Kendall tau at fractions under 0.1 in ``rows``."""
    small = [r for r in rows if r["fraction"] < 0.1]
    if not small:
        return methods[0]
    return max(methods, key=lambda m: np.nanmean([r[m][0] for r in small]))


def plot(results: dict[str, list[dict]], methods, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = 2 if len(results) > 1 else 1
    n_rows = -(-len(results) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 3.8 * n_rows), squeeze=False)
    for ax, (title, rows) in zip(axes.flat, results.items(), strict=False):
        x = [r["fraction"] for r in rows]
        for c in [*methods, "random"]:
            style = "--" if c == "random" else "-"
            ax.plot(x, [r[c][0] for r in rows], marker="o", ls=style, label=c)
        ax.axhline(0.9, color="grey", lw=0.8)
        ax.axvline(0.1, color="grey", lw=0.8)
        ax.set(title=title, xlabel="fraction of items", ylabel="Kendall tau, held-out models")
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{f:g}" for f in x])
        ax.minorticks_off()
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def model_table(models_by_metric: dict[str, list]) -> list[str]:
    """One row per model: run, shape, parameters, step, full-set score per metric, seconds."""
    metrics = list(models_by_metric)
    first = models_by_metric[metrics[0]]
    lines = [
        "| run | d_model | layers | params | step | "
        + " | ".join(f"full {m}" for m in metrics)
        + " | scoring s |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join(["---:"] * len(metrics)) + " | ---: |",
    ]
    for k, m in enumerate(first):
        md = m.metadata
        seconds = read_summary(m.name)["seconds"]
        scores = [
            np.mean([np.mean(list(s.values())) for s in models_by_metric[x][k].scores.values()])
            for x in metrics
        ]
        cells = [md["run"], md["d_model"], md["n_layers"], f"{md['params']:,}", md["step"]]
        cells += [f"{s:.4f}" for s in scores] + [f"{sum(seconds.values()):.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument(
        "--heldout-runs",
        nargs="*",
        default=[],
        help="groups of run names held out together, comma-separated: ladder-s2,ladder-s4",
    )
    default_tasks = sorted((ROOT / "data" / "sample" / "eval").glob("*.jsonl.gz"))
    parser.add_argument("--tasks", nargs="+", type=Path, default=default_tasks)
    parser.add_argument("--limit", type=int, default=None, help="first N items per task")
    parser.add_argument("--work", type=Path, default=Path("runs/distill-results"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "eval" / "results")
    parser.add_argument("--keep", type=float, default=0.05, help="fraction in the task files")
    parser.add_argument(
        "--method",
        help="method of the task files (default: the better one in the selection-run checks)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--score-only", action="store_true", help="score new checkpoints only")
    return parser.parse_args()


def agreement_sections(models: dict, groups: list[set[str]], methods: list[str]):
    """Per metric and split: the markdown section. Returns (sections, the first metric's rows
    per split for the plot and summary, the selection-run-only check rows)."""
    sections, curves, inner_rows = [], {}, []
    for metric in METRICS:
        for split, (select, heldout) in splits(models[metric], groups).items():
            rows = evaluate_all(select, heldout, methods)
            if metric == METRICS[0]:
                curves[split] = rows
            close, pairs = unresolved_pairs(heldout)
            sections += [f"### {metric}, {split}", ""]
            sections += [
                f"{len(select)} models chose the items, {len(heldout)} held-out models ranked "
                f"by the mean over tasks of `{metric}` on the subset vs the full set. On the "
                f"full set, {close} of their {pairs} pairs differ by less than 2 standard "
                "errors (a tie within noise that any subset may order either way).",
                "",
                *format_rows(rows, methods),
                "",
                *[f"- {verdict(rows, m)}" for m in methods],
                "",
            ]
            if split.startswith("by run") and metric == METRICS[0]:
                inner = inner_check(select, methods)
                inner_rows += inner
                sections += [
                    "Selection runs only, each left out in turn (mean over folds):",
                    "",
                    *format_rows(inner, methods),
                    "",
                ]
    return sections, curves, inner_rows


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from llm_eval.distill import METHODS, distill, read_results, write_distilled_tasks

    dirs = score_checkpoints(args.runs, args.tasks, args.work, args.limit)
    if args.score_only:
        return 0
    groups = [set(g.split(",")) for g in args.heldout_runs]
    methods = list(METHODS)
    models = {metric: [read_results(d, metric) for d in dirs] for metric in METRICS}
    sections, curves, inner_rows = agreement_sections(models, groups, methods)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(curves, methods, args.out / "distill.png")
    method = args.method or best_method(inner_rows, methods)
    chosen = distill(models[METRICS[0]], args.keep, method=method)
    written = write_distilled_tasks(chosen, args.tasks, args.out / "distilled")
    listing = ", ".join(f"`distilled/{p.name}`" for p in written)
    meta = header(device_name(torch.device("cpu")), [("load average", str(os.getloadavg()))])
    names = ", ".join(_task_name(p) for p in args.tasks)
    how = "" if args.method else (
        " (the method with the higher mean tau under 10 % of the items in the checks on "
        "selection runs only, never on held-out models)"
    )  # fmt: skip
    text = "\n".join(
        [
            "# Distilled suites: subset size vs rank agreement on held-out models",
            "",
            *[f"- {k}: {v}" for k, v in meta],
            "- the machine is shared (2 cores, other jobs running): the scoring seconds are "
            "indicative only",
            f"- tasks: {names}; the first {args.limit or 'all'} items of each; items a model "
            "skipped (too long) are left out of every model's set",
            "- methods (`llm_eval.distill`): `strata` (difficulty strata x discrimination), "
            "`match` (balanced: the subset mean of every selection model closest to its full "
            "mean, relative to the other models: it keeps their differences, not the level, so "
            "a distilled task's mean is not an estimate of the full task's); `random`: mean "
            "over 50 random subsets of the same size per task (nan: "
            "every model scored the same on the subset; such draws are left out)",
            f"- {args.keep:g} of each task chosen by `{method}` with all models: {listing}{how}",
            "",
            f"## Summary: Kendall tau on held-out models, `{METRICS[0]}`",
            "",
            *summary(curves, methods),
            "",
            "![Kendall tau vs fraction](distill.png)",
            "",
            f"## {len(dirs)} models",
            "",
            *model_table(models),
            "",
            "## Rank agreement",
            "",
            *sections,
        ]
    )
    write_atomic(args.out / "distill.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
