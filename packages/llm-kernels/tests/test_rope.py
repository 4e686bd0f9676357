"""Triton RoPE (half-split and interleaved, partial rotary, GQA heads) against references."""

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
from llm_kernels.ops.rope import apply_rope_triton  # noqa: E402

DEVICE = resolve_device("auto", cuda_available=torch.cuda.is_available())
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2), torch.float16: (2e-3, 2e-3)}


def _tables(t: int, rotary_dim: int, base: float = 10000.0):
    inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (T, R/2)
    return ang.cos().to(DEVICE), ang.sin().to(DEVICE)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(
    ("b", "t", "hq", "hk", "d", "rotary_dim"),
    [(2, 5, 4, 2, 16, 16), (1, 3, 3, 1, 12, 8), (1, 1, 1, 1, 8, 4)],  # full, partial + GQA, 1 row
)
def test_matches_float64_reference(dtype, interleaved, b, t, hq, hk, d, rotary_dim):
    torch.manual_seed(0)
    q = _leaf(torch.randn(b, t, hq, d, device=DEVICE).to(dtype))
    k = _leaf(torch.randn(b, t, hk, d, device=DEVICE).to(dtype))
    cos, sin = _tables(t, rotary_dim)
    qo, ko = apply_rope_triton(q, k, cos, sin, interleaved)
    dq_in, dk_in = torch.randn_like(qo), torch.randn_like(ko)
    dq, dk = torch.autograd.grad((qo, ko), (q, k), (dq_in, dk_in))
    q64, k64 = _leaf(q.double()), _leaf(k.double())
    qr, kr = reference.apply_rope(q64, k64, cos, sin, interleaved)
    dqr, dkr = torch.autograd.grad((qr, kr), (q64, k64), (dq_in.double(), dk_in.double()))
    atol, rtol = TOL[dtype]
    for a, r in ((qo, qr), (ko, kr), (dq, dqr), (dk, dkr)):
        assert a.dtype == dtype and a.shape == r.shape
        torch.testing.assert_close(a.double(), r, atol=atol, rtol=rtol)
    # Partial rotary: the tail passes through untouched.
    assert torch.equal(qo[..., rotary_dim:], q[..., rotary_dim:])


def test_layouts_differ_and_agree_on_a_permutation():
    # Interleaved pairs (2i, 2i+1) == half-split pairs (i, i+R/2) after permuting the dims.
    torch.manual_seed(1)
    q, k = torch.randn(1, 4, 2, 8, device=DEVICE), torch.randn(1, 4, 1, 8, device=DEVICE)
    cos, sin = _tables(4, 8)
    perm = torch.cat((torch.arange(0, 8, 2), torch.arange(1, 8, 2)))
    qi, _ = apply_rope_triton(q, k, cos, sin, True)
    qh, _ = apply_rope_triton(q[..., perm], k[..., perm], cos, sin, False)
    torch.testing.assert_close(qi[..., perm], qh)
    assert not torch.allclose(qi, apply_rope_triton(q, k, cos, sin, False)[0])


def test_non_contiguous_qk_from_fused_projection():
    torch.manual_seed(2)
    qkv = torch.randn(2, 3, 4 + 2 + 2, 8, device=DEVICE)  # (B, T, Hq + 2 Hkv, D)
    q, k = qkv[:, :, :4], qkv[:, :, 4:6]
    cos, sin = _tables(3, 6)
    for got, want in zip(apply_rope_triton(q, k, cos, sin), reference.apply_rope(q, k, cos, sin),
                         strict=True):  # fmt: skip
        torch.testing.assert_close(got, want)


def test_gradcheck_float64():
    opts = dict(dtype=torch.float64, device=DEVICE, requires_grad=True)
    q, k = torch.randn(1, 2, 2, 6, **opts), torch.randn(1, 2, 1, 6, **opts)
    cos, sin = _tables(2, 4)
    assert torch.autograd.gradcheck(
        lambda a, b: apply_rope_triton(a, b, cos, sin), (q, k), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda a, b: apply_rope_triton(a, b, cos, sin, True), (q, k), fast_mode=True
    )


def test_rejects_mismatched_tables():
    q = torch.randn(1, 3, 2, 8, device=DEVICE)
    cos, sin = _tables(4, 8)
    with pytest.raises(ValueError, match="must both be"):
        apply_rope_triton(q, q, cos, sin)
