"""Triton SwiGLU (two inputs and fused [gate | up]) against float64 references."""

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
from llm_kernels.ops import swiglu as swiglu_ops  # noqa: E402

DEVICE = resolve_device("auto", cuda_available=torch.cuda.is_available())
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2), torch.float16: (2e-3, 2e-3)}


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 129), (2, 3, 1100)])  # 1100 > BLOCK: two column blocks
def test_two_inputs_match_float64_reference(dtype, shape):
    torch.manual_seed(0)
    g = _leaf(3 * torch.randn(shape, device=DEVICE).to(dtype))
    u = _leaf(torch.randn(shape, device=DEVICE).to(dtype))
    out = swiglu_ops.swiglu_triton(g, u)
    dout = torch.randn_like(out)
    dg, du = torch.autograd.grad(out, (g, u), dout)
    g64, u64 = _leaf(g.double()), _leaf(u.double())
    out64 = reference.swiglu(g64, u64)
    dg64, du64 = torch.autograd.grad(out64, (g64, u64), dout.double())
    atol, rtol = TOL[dtype]
    for a, b in ((out, out64), (dg, dg64), (du, du64)):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), b, atol=atol, rtol=rtol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_matches_float64_reference(dtype):
    torch.manual_seed(1)
    gu = _leaf(torch.randn(4, 2 * 77, device=DEVICE).to(dtype))
    out = swiglu_ops.swiglu_fused_triton(gu)
    dout = torch.randn_like(out)
    (dgu,) = torch.autograd.grad(out, (gu,), dout)
    gu64 = _leaf(gu.double())
    out64 = reference.swiglu_fused(gu64)
    (dgu64,) = torch.autograd.grad(out64, (gu64,), dout.double())
    atol, rtol = TOL[dtype]
    assert out.shape == (4, 77)
    torch.testing.assert_close(out.double(), out64, atol=atol, rtol=rtol)
    torch.testing.assert_close(dgu.double(), dgu64, atol=atol, rtol=rtol)


def test_non_contiguous_inputs():
    torch.manual_seed(2)
    g = torch.randn(50, 6, device=DEVICE).T  # (6, 50) transposed view
    u = torch.randn(6, 100, device=DEVICE)[:, ::2]
    gu = torch.randn(6, 3, 40, device=DEVICE).transpose(0, 1)  # (3, 6, 40), rows not contiguous
    torch.testing.assert_close(swiglu_ops.swiglu_triton(g, u), reference.swiglu(g, u))
    torch.testing.assert_close(swiglu_ops.swiglu_fused_triton(gu), reference.swiglu_fused(gu))


def test_gradcheck_float64():
    opts = dict(dtype=torch.float64, device=DEVICE, requires_grad=True)
    g, u, gu = torch.randn(2, 5, **opts), torch.randn(2, 5, **opts), torch.randn(2, 10, **opts)
    assert torch.autograd.gradcheck(swiglu_ops.swiglu_triton, (g, u))
    assert torch.autograd.gradcheck(swiglu_ops.swiglu_fused_triton, (gu,))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        swiglu_ops.swiglu_triton(torch.ones(2, 3, device=DEVICE), torch.ones(2, 4, device=DEVICE))
    with pytest.raises(ValueError, match="even"):
        swiglu_ops.swiglu_fused_triton(torch.ones(2, 5, device=DEVICE))
