"""Distilled suites: a small subset of items per task that ranks models as the full set does.

From the per-item results of several models (``run_suite(output_dir=...)`` directories), each
item gets a score per model (`item_score`: a 0/1 hit, or the gold continuation's log-likelihood
per byte, which separates weak models better than their near-chance hits). On the *selection*
models only, one of two methods picks each task's subset:

- ``strata``: each item gets a difficulty (its mean score) and a discrimination (the
  correlation, across models, of its score with the model's full-task mean: an item that better
  models score higher on ranks them); items are split into difficulty strata (quantiles) and each
  stratum contributes its share of the subset, taking its most discriminating items.
- ``match`` (balanced selection): items are added one at a time, each time the one that brings
  the subset's mean score of *every* selection model, relative to the other selection models,
  closest (least squares) to that model's full-task mean relative to the others. The subset then
  reproduces the full-set differences between the selection models, not only their order, and
  so it is representative in every direction in which they differ (size, training steps), which
  is what a held-out model mixing those directions needs; discrimination measured against the
  full mean of a few models rewards items that follow the main direction only.

`evaluate_subsets` then compares, on *held-out* models, the ranking by subset mean with the
ranking by full mean (Kendall tau-b, Spearman), next to random subsets of the same size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm_eval.tasks import load_tasks
from llm_formats.eval_results import read_summary, read_task_records, write_jsonl_records

CONTINUOUS = "logprob_per_byte"
METHODS = ("strata", "match")


def item_score(record: dict[str, Any], metric: str) -> float:
    """One model's score on one item: ``correct[metric]`` (0/1) or, for ``logprob_per_byte``,
    the gold continuation's log-likelihood per UTF-8 byte (higher is better)."""
    if metric != CONTINUOUS:
        return float(record["correct"].get(metric, record["correct"]["acc"]))
    if "loglikelihoods" in record:
        gold = record["gold"]
        return record["loglikelihoods"][gold] / record["bytes"][gold]
    return record["loglikelihood"] / record["bytes"]


@dataclass
class ModelResults:
    """One model's per-item scores: ``{task: {item id: score}}`` and what the model was."""

    name: str
    scores: dict[str, dict[str, float]]
    metadata: dict[str, Any]


def read_results(directory: str | os.PathLike, metric: str) -> ModelResults:
    """Per-item scores from a ``run_suite`` output directory (skipped items left out)."""
    summary = read_summary(directory)
    scores = {}
    for task in summary["tasks"]:
        records = read_task_records(directory, task)
        scores[task] = {str(r["id"]): item_score(r, metric) for r in records if "skipped" not in r}
    return ModelResults(str(directory), scores, summary.get("metadata", {}))


def score_matrix(models: Sequence[ModelResults], task: str) -> tuple[list[str], np.ndarray]:
    """Item ids every model scored on ``task`` and the (models, items) score matrix."""
    common = set.intersection(*(set(m.scores.get(task, {})) for m in models))
    ids = sorted(common)
    if not ids:
        raise ValueError(f"task {task!r}: no item was scored by every model")
    return ids, np.array([[m.scores[task][i] for i in ids] for m in models])


def _correlations(matrix: np.ndarray) -> np.ndarray:
    """Per item (column), Pearson correlation of its scores with the models' row means."""
    totals = matrix.mean(1)
    x = matrix - matrix.mean(0)
    t = totals - totals.mean()
    denom = np.sqrt((x**2).sum(0) * (t**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (x * t[:, None]).sum(0) / denom
    return np.nan_to_num(corr, nan=0.0)  # an item all models score alike tells nothing


def select_items(matrix: np.ndarray, size: int, strata: int = 4) -> np.ndarray:
    """Column indices of ``size`` items: per difficulty stratum, its share of ``size``, taking
    the most discriminating items first (see the module docstring)."""
    n = matrix.shape[1]
    size = min(max(size, 1), n)
    difficulty = matrix.mean(0)
    discrimination = _correlations(matrix)
    order = np.argsort(difficulty, kind="stable")
    bins = np.array_split(order, min(strata, n))
    quota = _allocate([len(b) for b in bins], size)
    chosen = [
        b[np.argsort(-discrimination[b], kind="stable")[:q]]
        for b, q in zip(bins, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def match_items(matrix: np.ndarray, size: int, passes: int = 3) -> np.ndarray:
    """Column indices of ``size`` items whose mean, per row (model) and minus the mean over
    rows, is as close as possible (squared error summed over rows) to the same for all items
    (see the module docstring). Only the differences between the models are matched: an item
    every model scores alike, even at the task's mean level, counts as what it is for the
    ranking, a pull towards a tie. Items are added greedily, then up to ``passes`` rounds
    exchange each chosen item for the one that fits best with the others (greedy alone can
    lock in an early pick that a pair of later ones would beat)."""
    n = matrix.shape[1]
    size = min(max(size, 1), n)
    centered = matrix - matrix.mean(0)
    target = centered.mean(1)

    def errors(total: np.ndarray, k: int) -> np.ndarray:
        """Error of "the chosen items (summing to total) + item i", for every item i."""
        return (((total[:, None] + centered) / k - target[:, None]) ** 2).sum(0)

    free = np.ones(n, dtype=bool)
    chosen, total = [], np.zeros(matrix.shape[0])
    for k in range(1, size + 1):
        best = int(np.argmin(np.where(free, errors(total, k), np.inf)))  # ties: lower index
        chosen.append(best)
        free[best] = False
        total += centered[:, best]
    for _ in range(passes):
        changed = False
        for j, item in enumerate(chosen):
            rest = total - centered[:, item]
            error = np.where(free, errors(rest, size), np.inf)
            best = int(np.argmin(error))
            if error[best] < errors(rest, size)[item] - 1e-12:  # strictly better: no cycling
                free[item], free[best] = True, False
                chosen[j], total, changed = best, rest + centered[:, best], True
        if not changed:
            break
    return np.sort(np.array(chosen))


def _allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` over bins in proportion to ``sizes`` (largest remainders)."""
    exact = np.array(sizes, dtype=float) * total / sum(sizes)
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota))[: total - quota.sum()]:
        quota[i] += 1
    return np.minimum(quota, sizes).tolist()


def rank_agreement(full: np.ndarray, subset: np.ndarray) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho) between two score vectors over the same models."""
    from scipy.stats import kendalltau, spearmanr  # the [distill] extra

    if len(full) < 3:
        raise ValueError(f"rank agreement needs >= 3 held-out models, got {len(full)}")
    return float(kendalltau(full, subset).statistic), float(spearmanr(full, subset).statistic)


@dataclass
class Distilled:
    """Chosen item ids per task at one subset fraction."""

    fraction: float
    items: dict[str, list[str]]

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.items.values())


def distill(
    select: Sequence[ModelResults], fraction: float, strata: int = 4, method: str = "match"
) -> Distilled:
    """Choose ``fraction`` of each task's items from the selection models' per-item scores,
    by ``method`` (``strata`` or ``match``, see the module docstring)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: got {fraction}; must be in (0, 1]")
    if method not in METHODS:
        raise ValueError(f"method: got {method!r}; must be one of {', '.join(METHODS)}")
    if len(select) < 2:
        raise ValueError(f"distill needs >= 2 selection models, got {len(select)}")
    tasks = sorted(set.intersection(*(set(m.scores) for m in select)))
    items = {}
    for task in tasks:
        ids, matrix = score_matrix(select, task)
        size = math.ceil(fraction * len(ids))
        if method == "match":
            chosen = match_items(matrix, size)
        else:
            chosen = select_items(matrix, size, strata)
        items[task] = [ids[i] for i in chosen]
    return Distilled(fraction, items)


def evaluate_subsets(
    select: Sequence[ModelResults],
    heldout: Sequence[ModelResults],
    fractions: Sequence[float],
    *,
    strata: int = 4,
    method: str = "match",
    random_draws: int = 50,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Per fraction: items, and on the held-out models Kendall tau / Spearman between the suite
    score on the subset chosen by ``method`` and on the full set, with the mean over random
    subsets of the same size per task for comparison."""
    tasks = sorted(set.intersection(*(set(m.scores) for m in [*select, *heldout])))
    matrices = {task: score_matrix(heldout, task) for task in tasks}
    full = np.mean([m.mean(1) for _, m in matrices.values()], 0)
    rng = np.random.default_rng(seed)
    rows = []
    for fraction in fractions:
        chosen = distill(select, fraction, strata, method)
        cols = {}
        for task in tasks:
            where = {item: k for k, item in enumerate(matrices[task][0])}
            cols[task] = [where[i] for i in chosen.items[task] if i in where]
        subset = np.mean([matrices[t][1][:, c].mean(1) for t, c in cols.items()], 0)
        tau, rho = rank_agreement(full, subset)
        draws = []
        for _ in range(random_draws):
            scores = [
                m[:, rng.choice(m.shape[1], len(cols[t]), replace=False)].mean(1)
                for t, (_, m) in matrices.items()
            ]
            draws.append(rank_agreement(full, np.mean(scores, 0)))
        rows.append(
            {
                "method": method,
                "fraction": fraction,
                "items": sum(len(c) for c in cols.values()),
                "of": sum(m.shape[1] for _, m in matrices.values()),
                "kendall_tau": tau,
                "spearman": rho,
                # a subset on which every model scores the same has no defined rank correlation
                "random_kendall_tau": _nanmean([d[0] for d in draws]),
                "random_spearman": _nanmean([d[1] for d in draws]),
            }
        )
    return rows


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def write_distilled_tasks(
    chosen: Distilled, task_paths: Sequence[str | os.PathLike], output_dir: str | os.PathLike
) -> list[Path]:
    """Write ``<task>_distilled.jsonl`` per task: the chosen items, copied from the original
    task files with ``task`` renamed ``<task>_distilled``, so they run like any other task."""
    by_task = {}
    for path in task_paths:
        items = load_tasks(path)
        if items:
            by_task[items[0].task] = (path, items)
    written = []
    for task, ids in chosen.items.items():
        if task not in by_task:
            raise ValueError(f"task {task!r} has no task file among {list(task_paths)}")
        path, items = by_task[task]
        wanted = set(ids)
        records = [
            {
                "task": f"{task}_distilled",
                "id": item.id,
                "contexts": list(item.contexts),
                "choices": list(item.choices),
                "gold": list(item.gold) if item.is_generation else item.gold,
            }
            for item in items
            if str(item.id) in wanted
        ]
        if len(records) != len(wanted):
            raise ValueError(f"{path}: {len(wanted) - len(records)} chosen ids are missing")
        out = Path(output_dir) / f"{task}_distilled.jsonl"
        write_jsonl_records(out, records)
        written.append(out)
    return written
