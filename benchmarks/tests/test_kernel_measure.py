"""The correctness check of bench_kernels on torch-only providers: right, wrong, missing grads."""

import math

import torch
import torch.nn.functional as F

from benchmarks.kernels.bench_kernels import run_case
from benchmarks.kernels.kernel_cases import DTYPE, Case, _ce_reference
from benchmarks.kernels.kernel_measure import TOL, check, reference


def _mul_case() -> Case:
    torch.manual_seed(0)
    x, w = torch.randn(6, 40).to(DTYPE), torch.rand(40).to(DTYPE)
    providers = {
        "right": lambda x, w: x * w,
        "wrong": lambda x, w: x * w * 1.1,
        "module_weight": lambda x, w: x * w.detach(),  # declared below: w gets no grad
        "lost_grad": lambda x, w: x * w.detach(),  # not declared: a bug
    }
    return Case("mul", "6x40", [x, w], providers, lambda x, w: x * w, 3 * 240 * 2, 8 * 240 * 2,
                no_grad={"module_weight": (1,)})  # fmt: skip


def test_check_flags_wrong_outputs_and_missing_grads():
    case = _mul_case()
    ref = reference(case)
    fwd, both = check(case, "right", ref)
    assert fwd < 2**-8 and both < 2**-7
    fwd, both = check(case, "wrong", ref)
    assert 0.09 < fwd < 0.11 and both >= fwd
    assert check(case, "module_weight", ref)[1] < TOL  # only x's grad is compared
    assert check(case, "lost_grad", ref) == (check(case, "right", ref)[0], math.inf)


def test_run_case_marks_wrong_providers_and_times_all():
    rows = run_case(_mul_case(), torch.device("cpu"))
    ok = {(r.provider, r.mode): r.ok for r in rows}
    assert ok[("right", "fwd")] and ok[("right", "fwd+bwd")] and ok[("module_weight", "fwd+bwd")]
    assert not ok[("wrong", "fwd")] and not ok[("wrong", "fwd+bwd")]
    assert ok[("lost_grad", "fwd")] and not ok[("lost_grad", "fwd+bwd")]
    assert all(r.ms is not None and r.peak_mib is None for r in rows)  # timed; no memory on CPU


def test_chunked_cross_entropy_reference_matches_the_whole_one():
    torch.manual_seed(0)
    h = torch.randn(10, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(13, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 13, (10,))
    chunked = _ce_reference(labels, chunk=3)(h, w)
    whole = F.cross_entropy(h @ w.T, labels)
    torch.testing.assert_close(chunked, whole)
    g_chunked = torch.autograd.grad(chunked, (h, w))
    g_whole = torch.autograd.grad(whole, (h, w))
    for a, b in zip(g_chunked, g_whole, strict=True):
        torch.testing.assert_close(a, b)


def test_main_exits_1_when_llm_kernels_disagrees(tmp_path, monkeypatch):
    from benchmarks.kernels import bench_kernels

    def wrong_builder(shapes, device, compile_):
        case = _mul_case()
        case.providers = {"llm_kernels": case.providers["wrong"], "eager": lambda x, w: x * w}
        return [case]

    monkeypatch.setitem(bench_kernels.BUILDERS, "rms_norm", wrong_builder)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # main sets it for CPU runs; restored afterwards
    argv = ["--smoke", "--device", "cpu", "--ops", "rms_norm", "--no-plot", "--out", str(tmp_path)]
    assert bench_kernels.main(argv) == 1
    table = next(tmp_path.glob("kernels-smoke-*.md")).read_text()
    assert "| mul | 6x40 | llm_kernels | fwd | False |" in table
    assert "| mul | 6x40 | eager | fwd | True |" in table
