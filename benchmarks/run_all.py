"""Run every benchmark suite that applies to this machine, from one command.

Run: ``uv run python -m benchmarks.run_all`` (all), ``--quick`` (the quick ones, with their quick
arguments), ``--only kernels throughput``, ``--list`` (what would run here and why not), or
``--dry-run`` (the commands, not run).

The suites are listed in ``benchmarks/suites.toml`` (script, needs a GPU, quick, arguments). On a
machine without a CUDA GPU, a GPU suite runs its ``cpu_args`` reduced mode if it has one and is
skipped with the reason otherwise; a suite whose script is not in this checkout is skipped with
its path. Each suite runs as its own process, ``python -m <its module>`` in the repository root
(so ``benchmarks`` and ``tools`` import as packages; a crash or out-of-memory stays in its
suite); the summary at the end says what ran, what was skipped and why, and the exit status is 1
when a suite that ran failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "benchmarks" / "suites.toml"

__all__ = ["Plan", "Suite", "load_registry", "main", "plan"]


@dataclass(frozen=True, kw_only=True)
class Suite:
    """One entry of ``suites.toml`` (see the comments at its top)."""

    name: str
    script: str
    gpu: bool
    quick: bool
    args: list[str] = field(default_factory=list)
    quick_args: list[str] | None = None
    cpu_args: list[str] | None = None


@dataclass(frozen=True)
class Plan:
    """What happens to one suite on this machine: the command, or why it is skipped."""

    suite: Suite
    command: list[str] | None
    skip: str = ""

    def shown(self) -> str:
        """The command as a person would type it (``python -m <module> <args>``)."""
        return " ".join(["python", *self.command[1:]]) if self.command else f"skip: {self.skip}"


def module_of(script: str) -> str:
    """The module a script path runs as: ``benchmarks/eval/bench_eval.py`` ->
    ``benchmarks.eval.bench_eval``."""
    return script.removesuffix(".py").replace("/", ".")


def load_registry(path: Path = REGISTRY) -> list[Suite]:
    """The suites of ``path``; a wrong entry is an error naming the file, the entry and field."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read the suite registry: {e}") from None
    suites, names = [], set()
    allowed = set(Suite.__dataclass_fields__)
    for i, entry in enumerate(data.get("suite", [])):
        where = f"{path}: [[suite]] number {i + 1} ({entry.get('name', 'no name')})"
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
        for key, kind in (("name", str), ("script", str), ("gpu", bool), ("quick", bool)):
            if not isinstance(entry.get(key), kind):
                raise ValueError(f"{where}: '{key}' must be a {kind.__name__}")
        for key in ("args", "quick_args", "cpu_args"):
            value = entry.get(key, [])
            if not (isinstance(value, list) and all(isinstance(a, str) for a in value)):
                raise ValueError(f"{where}: '{key}' must be a list of strings")
        if entry["name"] in names:
            raise ValueError(f"{where}: the name {entry['name']!r} is used twice")
        names.add(entry["name"])
        suites.append(Suite(**entry))
    if not suites:
        raise ValueError(f"{path}: no [[suite]] entries")
    return suites


def plan(suites: list[Suite], *, has_gpu: bool, quick: bool, root: Path = ROOT) -> list[Plan]:
    """The command of each suite on this machine, or the reason it is skipped."""
    plans = []
    for suite in suites:
        args = suite.quick_args if quick and suite.quick_args is not None else suite.args
        if quick and not suite.quick:
            plans.append(Plan(suite, None, "not a quick suite (run without --quick)"))
        elif not (root / suite.script).is_file():
            plans.append(Plan(suite, None, f"{suite.script} is not in this checkout"))
        elif suite.gpu and not has_gpu and suite.cpu_args is None:
            plans.append(Plan(suite, None, "needs a CUDA GPU (none here) and has no CPU mode"))
        else:
            if suite.gpu and not has_gpu:
                args = suite.cpu_args
            plans.append(Plan(suite, [sys.executable, "-m", module_of(suite.script), *args]))
    return plans


def has_cuda() -> bool:
    """Whether torch sees a CUDA device (False when torch is not installed)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="only the quick suites, quick arguments")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these suites")
    p.add_argument("--list", action="store_true", help="show what would run here, and why not")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--registry", type=Path, default=REGISTRY)
    p.add_argument("--timeout", type=float, help="seconds per suite (default: none)")
    return p


def main(argv: list[str] | None = None, *, has_gpu: bool | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        suites = load_registry(args.registry)
    except ValueError as e:
        parser.error(str(e))
    if args.only:
        known = {s.name for s in suites}
        unknown = sorted(set(args.only) - known)
        if unknown:
            parser.error(f"--only: unknown suite(s) {unknown}; known: {sorted(known)}")
        suites = [s for s in suites if s.name in args.only]
    gpu = has_cuda() if has_gpu is None else has_gpu
    root = args.registry.resolve().parents[1]  # benchmarks/suites.toml -> the repository
    plans = plan(suites, has_gpu=gpu, quick=args.quick, root=root)
    print(f"run_all: {'a CUDA GPU' if gpu else 'no CUDA GPU'}; {len(plans)} suite(s)", flush=True)
    if args.list or args.dry_run:
        for p in plans:
            print(f"  {p.suite.name:<12} {p.shown()}")
        return 0
    summary, failed = [], 0
    for p in plans:
        if p.command is None:
            print(f"=== {p.suite.name}: skipped: {p.skip}", flush=True)
            summary.append((p.suite.name, f"skipped: {p.skip}"))
            continue
        print(f"=== {p.suite.name}: {p.shown()}", flush=True)
        start = time.monotonic()
        try:
            rc = subprocess.run(p.command, cwd=root, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timed out"
        seconds = time.monotonic() - start
        failed += rc != 0
        summary.append((p.suite.name, f"{'ok' if rc == 0 else f'FAILED ({rc})'}, {seconds:.0f} s"))
    print("=== summary")
    for name, what in summary:
        print(f"  {name:<12} {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
