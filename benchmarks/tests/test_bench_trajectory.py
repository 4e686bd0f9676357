"""bench_trajectory: a CPU smoke run (kernels in Triton's interpreter), and its verdict."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.trajectory import bench_trajectory

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_an_agreeing_table(tmp_path):
    pytest.importorskip("triton", reason="needs triton (llm-kernels)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.trajectory.bench_trajectory", "--smoke",
         "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (md,) = tmp_path.glob("trajectory-smoke-*.md")
    text = md.read_text()
    assert "verdict: AGREE" in text and "| 8 |" in text  # the last of the 8 steps is a row


def test_verdict_flags_a_kernel_curve_that_drifts():
    module = bench_trajectory
    eager = [3.0 - 0.01 * i for i in range(40)]
    fp32 = [x + 0.005 for x in eager]
    ok, _ = module.verdict({"kernels": eager, "eager": eager, "fp32": fp32}, tolerance=2.0)
    assert ok
    drift = [x + 0.05 for x in eager]  # 0.05 > 2 x 0.005 + 0.01
    ok, lines = module.verdict({"kernels": drift, "eager": eager, "fp32": fp32}, tolerance=2.0)
    assert not ok and lines[-1].endswith("DISAGREE")
    ok, _ = module.verdict({"kernels": [float("nan")] * 40, "eager": eager, "fp32": fp32}, 2.0)
    assert not ok
