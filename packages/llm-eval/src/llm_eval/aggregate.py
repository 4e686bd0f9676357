"""One number per task and over tasks: each task's headline ``score``, OLMES's best of the
cloze and multiple-choice-letter formulations, and the macro average with its standard error."""

from __future__ import annotations

import math
from collections.abc import Mapping

from llm_eval.task_spec import TaskSpec

__all__ = ["add_score", "best_of_formulations", "macro_average"]


def add_score(metrics: dict[str, float], spec: TaskSpec, generation_items: bool) -> None:
    """Set ``score`` / ``score_stderr``: a generate task's ``spec.metric``, an MC-letter task's
    ``acc`` (one-token letters: no length normalisation), a cloze task's ``acc_norm`` (OLMES's
    per-character normalisation), lambada's greedy ``acc``."""
    if spec.kind == "generate":
        name = spec.metric
    elif spec.kind == "mc_letter" or generation_items:
        name = "acc"
    else:
        name = "acc_norm"
    if name in metrics:
        metrics["score"], metrics["score_stderr"] = metrics[name], metrics[f"{name}_stderr"]


def best_of_formulations(
    scores: Mapping[str, dict[str, float]], specs: Mapping[str, tuple[str, TaskSpec]]
) -> dict[str, dict[str, float | str]]:
    """Per task file and shot count that ran as cloze and as MC letters: the better ``score``
    of the two (OLMES reports the max over formulations) and which task gave it.

    Args:
        scores: ``{result name: metrics}`` with ``score``.
        specs: ``{result name: (the file's task, spec)}``.
    """
    groups: dict[str, list[str]] = {}
    for name, (base, spec) in specs.items():
        if spec.kind in ("loglikelihood", "mc_letter") and "score" in scores.get(name, {}):
            shots = f"_{spec.num_fewshot}shot" if spec.num_fewshot else ""
            groups.setdefault(f"{base}{shots}", []).append(name)
    out = {}
    for key, names in groups.items():
        kinds = {specs[n][1].kind for n in names}
        if kinds == {"loglikelihood", "mc_letter"}:
            best = max(names, key=lambda n: scores[n]["score"])
            out[key] = {"score": scores[best]["score"], "task": best}
    return out


def macro_average(scores: Mapping[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted mean of the tasks' ``score`` and its standard error: the tasks' items are
    independent, so Var(mean) = sum of the tasks' squared standard errors / n^2."""
    values = [
        (m["score"], m.get("score_stderr", math.nan)) for m in scores.values() if "score" in m
    ]
    if not values:
        return {}
    n = len(values)
    mean = sum(v for v, _ in values) / n
    stderr = math.sqrt(sum(se * se for _, se in values)) / n
    return {"macro_avg": mean, "macro_avg_stderr": stderr, "tasks": float(n)}
