"""A task as the suite runs it: a task file (the JSONL item schema) and how it is asked.

``TaskSpec(path=...)`` is the zero-shot cloze task of the file, as before. ``kind`` picks the
formulation: ``"loglikelihood"`` (cloze, or lambada's greedy check), ``"mc_letter"`` (OLMES's
multiple-choice letters, `llm_eval.prompts.mc_letter`) or ``"generate"`` (generate-until,
scored by `llm_eval.answers`); ``num_fewshot`` prefixes solved examples. Users write their own
as YAML files (`load_task_specs`; the ``[yaml]`` extra), e.g.::

    path: my_items.jsonl          # relative to this file
    kind: generate
    num_fewshot: 3
    description: "Answer the science questions.\\n\\n"
    stop: ["\\n", "."]
    max_tokens: 16
    metric: exact_match
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from llm_eval.answers import ANSWER_METRICS
from llm_eval.prompts import mc_letter, with_fewshot
from llm_formats.eval_items import EvalItem, read_items

__all__ = ["TaskSpec", "as_spec", "load_task_specs", "spec_items"]

Kind = Literal["loglikelihood", "mc_letter", "generate"]
_SUFFIX = {"loglikelihood": "", "mc_letter": "_mc", "generate": "_gen"}
_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(kw_only=True, frozen=True)
class TaskSpec:
    """One task of a suite.

    Attributes:
        path: Task file (``{task, id, contexts, choices, gold}`` JSONL, optionally gzipped).
        kind: ``loglikelihood``, ``mc_letter`` or ``generate`` (see the module docstring).
        name: Result name; default the file's task plus ``_mc`` / ``_gen`` and ``_<k>shot``.
        num_fewshot: Solved examples before each item (0 = zero-shot).
        fewshot_seed: Seed of the example draw (per item: `llm_eval.prompts.fewshot_prefix`).
        fewshot_path: Another file (a training split) to draw examples from; default the
            task's other items (never the item itself).
        description: Text before the examples (the harness's ``description``).
        fewshot_delimiter: Between examples and before the question.
        stop: Stop strings of a generate task.
        max_tokens: Most tokens a generate task generates per item.
        metric: The generate task's headline metric (``exact_match``, ``f1``, ``contains``:
            all three are reported; this one is ``score`` in aggregates).
    """

    path: str
    kind: Kind = "loglikelihood"
    name: str = ""
    num_fewshot: int = 0
    fewshot_seed: int = 1234
    fewshot_path: str = ""
    description: str = ""
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ("\n",)
    max_tokens: int = 32
    metric: str = "exact_match"

    def __post_init__(self) -> None:
        if self.kind not in _SUFFIX:
            raise ValueError(f"TaskSpec.kind: got {self.kind!r}; allowed: {sorted(_SUFFIX)}")
        if self.num_fewshot < 0:
            raise ValueError(f"TaskSpec.num_fewshot: got {self.num_fewshot}; must be >= 0")
        if self.max_tokens < 1:
            raise ValueError(f"TaskSpec.max_tokens: got {self.max_tokens}; must be >= 1")
        if self.metric not in ANSWER_METRICS:
            raise ValueError(
                f"TaskSpec.metric: got {self.metric!r}; allowed: {sorted(ANSWER_METRICS)}"
            )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if not all(isinstance(x, str) and x for x in stop):
            raise ValueError(f"TaskSpec.stop: got {self.stop!r}; must be non-empty strings")
        object.__setattr__(self, "stop", stop)

    def task_name(self, base: str) -> str:
        """The name results are filed under."""
        shots = f"_{self.num_fewshot}shot" if self.num_fewshot else ""
        return self.name or f"{base}{_SUFFIX[self.kind]}{shots}"


def as_spec(task: str | os.PathLike | TaskSpec) -> list[TaskSpec]:
    """A spec as given, a task file's zero-shot spec, or the specs of a YAML file."""
    if isinstance(task, TaskSpec):
        return [task]
    if str(task).endswith(_YAML_SUFFIXES):
        return load_task_specs(task)
    return [TaskSpec(path=str(task))]


def load_task_specs(path: str | os.PathLike) -> list[TaskSpec]:
    """The specs of a YAML file: one mapping of `TaskSpec` fields, or ``tasks:`` a list of them.
    A relative ``path`` / ``fewshot_path`` is relative to the YAML file; unknown keys are
    errors naming the file."""
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("llm-eval: YAML task files need `pip install llm-eval[yaml]`") from err
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    entries = data.get("tasks", [data]) if isinstance(data, dict) else None
    if not entries or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path}: expected a mapping of task fields or 'tasks:' a list of them")
    return [_spec_from(entry, path, i) for i, entry in enumerate(entries)]


def _spec_from(entry: dict[str, Any], path: Path, index: int) -> TaskSpec:
    known = {f.name for f in fields(TaskSpec)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{path}: task {index}: unknown keys {unknown}; allowed: {sorted(known)}")
    if "path" not in entry:
        raise ValueError(f"{path}: task {index}: missing 'path' (the task's JSONL file)")
    entry = dict(entry)
    for key in ("path", "fewshot_path"):
        if entry.get(key) and not Path(entry[key]).is_absolute():
            entry[key] = str(path.parent / entry[key])
    try:
        return TaskSpec(**entry)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: task {index}: {err}") from err


def spec_items(spec: TaskSpec, limit: int | None = None) -> tuple[str, str, list[EvalItem]]:
    """(the file's task, result name, the items as the spec asks them): the first ``limit``
    items of the file, in the MC-letter formulation if asked, with their few-shot prefixes
    (examples drawn from the whole file or ``fewshot_path``, in the same formulation),
    renamed to the result name."""
    items = read_items(spec.path)
    if not items:
        raise ValueError(f"{spec.path}: no task items")
    name = spec.task_name(items[0].task)
    asked = items[:limit]
    pool = read_items(spec.fewshot_path) if spec.fewshot_path else items
    if spec.kind == "mc_letter":
        asked, pool = [mc_letter(i) for i in asked], [mc_letter(i) for i in pool]
    if spec.num_fewshot:
        asked = with_fewshot(
            asked, pool, spec.num_fewshot, seed=spec.fewshot_seed,
            description=spec.description, delimiter=spec.fewshot_delimiter,
        )  # fmt: skip
    elif spec.description:
        asked = with_fewshot(asked, pool, 0, seed=0, description=spec.description)
    return items[0].task, name, [_renamed(i, name) for i in asked]


def _renamed(item: EvalItem, name: str) -> EvalItem:
    from dataclasses import replace

    return item if item.task == name else replace(item, task=name)
