"""Triton RMSNorm (+ residual) against float64 references; CPU via TRITON_INTERPRET=1."""

import os

import pytest
import torch

from llm_formats.device import resolve_device
from llm_kernels import reference

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs a CUDA GPU or TRITON_INTERPRET=1 (Triton's CPU interpreter)",
)
triton = pytest.importorskip("triton", reason="needs triton")
from llm_kernels.ops.rms_norm import rms_norm_residual_triton, rms_norm_triton  # noqa: E402

DEVICE = resolve_device("auto", cuda_available=torch.cuda.is_available())
# (atol, rtol) for outputs and grads, versus a float64 reference on the same rounded inputs.
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (3e-2, 2e-2), torch.float16: (4e-3, 4e-3)}


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()


def _grads(out: torch.Tensor, inputs, grad: torch.Tensor):
    return torch.autograd.grad(out, inputs, grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("shape", "offset"), [((1, 129), 0.0), ((5, 64), 1.0), ((3, 4, 33), 0.5)])
def test_matches_float64_reference(dtype, shape, offset):
    torch.manual_seed(0)
    x = _leaf(torch.randn(shape, device=DEVICE).to(dtype))
    w = _leaf(torch.randn(shape[-1], device=DEVICE).to(dtype))
    y = rms_norm_triton(x, w, 1e-6, offset)
    dy = torch.randn_like(y)
    dx, dw = _grads(y, (x, w), dy)
    x64, w64 = _leaf(x.double()), _leaf(w.double())
    y64 = reference.rms_norm(x64, w64, 1e-6, offset)
    dx64, dw64 = _grads(y64, (x64, w64), dy.double())
    atol, rtol = TOL[dtype]
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y.double(), y64, atol=atol, rtol=rtol)
    torch.testing.assert_close(dx.double(), dx64, atol=atol, rtol=rtol)
    # dw sums over rows: its error grows with the number of rows.
    torch.testing.assert_close(dw.double(), dw64, atol=atol * 4, rtol=rtol)


def test_non_contiguous_input_and_weight_grad_is_deterministic():
    torch.manual_seed(1)
    base = torch.randn(9, 2 * 40, device=DEVICE)
    x = _leaf(base)[:, ::2]  # row stride 80, column stride 2
    xt = _leaf(torch.randn(40, 9, device=DEVICE)).T  # transposed view
    w = _leaf(torch.rand(40, device=DEVICE))
    for inp in (x, xt):
        y = rms_norm_triton(inp, w, 1e-5)
        ref = reference.rms_norm(inp.double(), w.double(), 1e-5)
        torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
    dy = torch.randn(9, 40, device=DEVICE)
    dws = [_grads(rms_norm_triton(x, w, 1e-5), (w,), dy)[0] for _ in range(2)]
    assert torch.equal(dws[0], dws[1])  # partial sums, no atomics: bitwise reproducible


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_residual_variant_matches_reference(dtype):
    torch.manual_seed(2)
    x = _leaf(torch.randn(6, 72, device=DEVICE).to(dtype))
    r = _leaf(torch.randn(6, 72, device=DEVICE).to(dtype))
    w = _leaf(torch.randn(72, device=DEVICE).to(dtype))
    y, s = rms_norm_residual_triton(x, r, w, 1e-6, 1.0)
    dy, ds = torch.randn_like(y), torch.randn_like(s)
    grads = torch.autograd.grad((y, s), (x, r, w), (dy, ds))
    x64, r64, w64 = (_leaf(t.double()) for t in (x, r, w))
    y64, s64 = reference.rms_norm_residual(x64, r64, w64, 1e-6, 1.0)
    grads64 = torch.autograd.grad((y64, s64), (x64, r64, w64), (dy.double(), ds.double()))
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(s, (x + r).detach())  # the sum is rounded like unfused code
    torch.testing.assert_close(y.double(), reference.rms_norm(s.double(), w64, 1e-6, 1.0),
                               atol=atol, rtol=rtol)  # fmt: skip
    for g, g64 in zip(grads, grads64, strict=True):
        torch.testing.assert_close(g.double(), g64, atol=atol * 4, rtol=rtol)


def test_gradcheck_float64():
    x = torch.randn(3, 7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    r = torch.randn(3, 7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    w = torch.randn(7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, c: rms_norm_triton(a, c, 1e-6, 0.5), (x, w), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda a, b, c: rms_norm_residual_triton(a, b, c, 1e-6, 0.0), (x, r, w), fast_mode=True
    )


def test_rejects_wrong_weight_shape():
    with pytest.raises(ValueError, match="weight has shape"):
        rms_norm_triton(torch.randn(2, 8, device=DEVICE), torch.ones(7, device=DEVICE))
