"""bench_kernels: a CPU smoke run end to end (Triton interpreter), and the targets table."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.kernels.kernel_report import Row, Target, evaluate, targets_markdown

ROOT = Path(__file__).resolve().parents[2]

OPS = {"rms_norm", "rms_norm_residual", "swiglu", "rope", "linear_ce"}
TOL = 2e-2  # kernel_measure.TOL (not imported: that module imports torch)


def _rows(path: Path) -> list[dict]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.kernels.bench_kernels", "--smoke", "--device", "cpu",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    return proc, out


def test_smoke_run_checks_every_op_and_writes_results(smoke):
    proc, out = smoke
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(out.glob("kernels-smoke-*.md"))
    table = md.with_suffix(".csv")
    assert table.exists() and not list(out.glob("*.tmp"))
    assert md.name.startswith("kernels-smoke-")  # never the real results' names
    rows = _rows(table)
    assert {r["op"] for r in rows} == OPS
    ours = [r for r in rows if r["provider"] == "llm_kernels"]
    assert {(r["op"], r["mode"]) for r in ours} == {
        (op, m) for op in OPS for m in ("fwd", "fwd+bwd")
    }
    for r in ours:
        assert r["ok"] == "True", r
        assert 0.0 <= float(r["max_err"]) < TOL, r
        assert r["ms"] not in ("", "None"), r  # the timing path ran (its value is not checked)
    assert all(r["ok"] == "True" for r in rows if r["provider"] == "eager")
    assert "torch.compile" not in {r["provider"] for r in rows}  # skipped on CPU
    text = md.read_text()
    for key in (
        "- date:",
        "UTC",
        "- device:",
        "- torch:",
        "- triton:",
        "- liger-kernel:",
        "- git:",
    ):
        assert key in text
    assert "Bytes that must move" in text and "## Targets" in text
    assert "None of the target shapes was measured" in text


def _row(op, shape, provider, mode, ms, ok=True, copy_ratio=None, peak=None):
    return Row(op, shape, provider, mode, ok, 0.0 if ok else 0.5, ms, None, copy_ratio, None, peak)


def test_speedup_target_uses_the_best_correct_other_provider():
    t = Target("rms_norm", "16384x4096", "fwd+bwd", "speedup", 1.15)
    rows = [
        _row("rms_norm", "16384x4096", "llm_kernels", "fwd+bwd", 1.0),
        _row("rms_norm", "16384x4096", "eager", "fwd+bwd", 1.5),
        _row("rms_norm", "16384x4096", "liger", "fwd+bwd", 1.1),
        _row("rms_norm", "16384x4096", "F.rms_norm", "fwd+bwd", 0.5, ok=False),  # wrong: left out
    ]
    measured, required, verdict = evaluate(t, rows)
    assert "1.100x" in measured and "liger" in measured
    assert required == ">= 1.15x"
    assert verdict == "missed by 4.3%"
    rows[2] = _row("rms_norm", "16384x4096", "liger", "fwd+bwd", 1.2)
    assert evaluate(t, rows)[2] == "met"


def test_copy_memory_and_time_targets():
    shape = "16384x4096x128256"
    rows = [
        _row("rms_norm", "32768x8192", "llm_kernels", "fwd", 1.0, copy_ratio=0.95),
        _row("linear_ce", shape, "llm_kernels", "fwd+bwd", 110.0, peak=3000.0),
        _row("linear_ce", shape, "eager", "fwd+bwd", 100.0, peak=20000.0),
    ]
    copy = Target("rms_norm", "32768x8192", "fwd", "copy", 0.90)
    assert evaluate(copy, rows)[2] == "met"
    memory = Target("linear_ce", shape, "fwd+bwd", "memory", 0.25)
    assert evaluate(memory, rows)[0].startswith("0.150x") and evaluate(memory, rows)[2] == "met"
    time = Target("linear_ce", shape, "fwd+bwd", "time", 1.0)
    assert evaluate(time, rows)[2] == "missed by 10.0%"
    # a shape that was not measured gives no row; a wrong llm_kernels result is no success
    assert evaluate(Target("rms_norm", "16384x4096", "fwd", "copy", 0.9), rows) is None
    rows[0] = _row("rms_norm", "32768x8192", "llm_kernels", "fwd", 1.0, ok=False, copy_ratio=0.95)
    assert evaluate(copy, rows)[2].startswith("invalid")


def test_targets_table_lists_only_measured_targets():
    rows = [
        _row("swiglu", "16384x11008", "llm_kernels", "fwd", 1.0, copy_ratio=0.8),
        _row("swiglu", "16384x11008", "llm_kernels", "fwd+bwd", 2.0),
        _row("swiglu", "16384x11008", "eager", "fwd+bwd", 3.0),
    ]
    table = "\n".join(targets_markdown(rows))
    assert table.count("| swiglu |") == 2 and "rms_norm" not in table
    assert "missed by 11.1%" in table  # copy ratio 0.8 against 0.90
    assert "| met |" in table  # 1.5x against 1.05x
