"""Fused linear + cross-entropy against eager float64, and over optimizer steps."""

import os

import pytest
import torch
import torch.nn.functional as F

from llm_formats.device import resolve_device
from llm_kernels import reference

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs a CUDA GPU or TRITON_INTERPRET=1 (Triton's CPU interpreter)",
)
triton = pytest.importorskip("triton", reason="needs triton")
from llm_kernels.ops.linear_cross_entropy import fused_linear_cross_entropy_triton  # noqa: E402

DEVICE = resolve_device("auto", cuda_available=torch.cuda.is_available())
N, D, V = 37, 64, 301
TOL = {torch.float32: (2e-5, 1e-4), torch.bfloat16: (1e-3, 2e-2)}


def _data(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g).to(DEVICE, dtype).requires_grad_()
    w = (0.3 * torch.randn(V, D, generator=g)).to(DEVICE, dtype).requires_grad_()
    labels = torch.randint(0, V, (N,), generator=g).to(DEVICE)
    labels[::4] = -100  # ignored tokens, including the first row
    return h, w, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("smoothing", "z_loss"), [(0.0, 0.0), (0.1, 1e-3)])
def test_loss_and_grads_match_float64_eager(dtype, smoothing, z_loss):
    h, w, labels = _data(dtype)
    kw = dict(label_smoothing=smoothing, z_loss=z_loss)
    loss, z = fused_linear_cross_entropy_triton(h, w, labels, chunk_size=16, **kw)  # 3 chunks
    gh, gw = torch.autograd.grad(loss, (h, w))
    h64, w64 = (t.detach().double().requires_grad_() for t in (h, w))
    loss64, z64 = reference.fused_linear_cross_entropy(h64, w64, labels, **kw)
    gh64, gw64 = torch.autograd.grad(loss64, (h64, w64))
    atol, rtol = TOL[dtype]
    assert loss.dtype == torch.float32 and not z.requires_grad
    assert gh.dtype == dtype and gw.dtype == dtype
    torch.testing.assert_close(loss.double(), loss64, atol=atol, rtol=rtol)
    torch.testing.assert_close(z.double(), z64, atol=atol, rtol=rtol)
    torch.testing.assert_close(gh.double(), gh64, atol=atol, rtol=rtol)
    torch.testing.assert_close(gw.double(), gw64, atol=atol, rtol=rtol)
    assert torch.all(gh[labels == -100] == 0)


def test_autocast_casts_inputs_like_the_linear_it_replaces():
    # fp32 master weights under bf16 autocast (how a model trains): the op must not let autocast
    # reach its own matmuls (it once wrote bf16 products into float32 buffers and failed).
    h, w, labels = _data(torch.float32)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        loss, _ = fused_linear_cross_entropy_triton(h, w, labels, chunk_size=16, z_loss=1e-3)
    gh, gw = torch.autograd.grad(loss, (h, w))
    assert loss.dtype == torch.float32 and gh.dtype == gw.dtype == torch.float32
    h64, w64 = (t.detach().bfloat16().double().requires_grad_() for t in (h, w))
    loss64, _ = reference.fused_linear_cross_entropy(h64, w64, labels, z_loss=1e-3)
    gh64, gw64 = torch.autograd.grad(loss64, (h64, w64))
    atol, rtol = TOL[torch.bfloat16]
    torch.testing.assert_close(loss.double(), loss64, atol=atol, rtol=rtol)
    torch.testing.assert_close(gh.double(), gh64, atol=atol, rtol=rtol)
    torch.testing.assert_close(gw.double(), gw64, atol=atol, rtol=rtol)


def test_reference_agrees_with_torch_cross_entropy():
    h, w, labels = _data(torch.float64)
    loss, z = reference.fused_linear_cross_entropy(h, w, labels, label_smoothing=0.1)
    want = F.cross_entropy(h @ w.T, labels, ignore_index=-100, label_smoothing=0.1)
    torch.testing.assert_close(loss, want)
    valid = labels != -100
    torch.testing.assert_close(z, torch.logsumexp((h @ w.T)[valid], -1).pow(2).mean())


def test_all_ignored_gives_zero_loss_and_grads():
    h, w, labels = _data(torch.float32)
    loss, z = fused_linear_cross_entropy_triton(h, w, torch.full_like(labels, -100))
    loss.backward()
    assert loss.item() == 0.0 and z.item() == 0.0
    assert torch.count_nonzero(h.grad) == 0 and torch.count_nonzero(w.grad) == 0


def test_no_grad_forward_matches():
    h, w, labels = _data(torch.float32)
    with torch.no_grad():
        loss, _ = fused_linear_cross_entropy_triton(h, w, labels)
    want, _ = reference.fused_linear_cross_entropy(h, w, labels)
    torch.testing.assert_close(loss, want)


@pytest.mark.trains
def test_training_trajectory_tracks_eager():
    # A tiny linear model (embedding -> unembedding) learns next = (7 * token) % vocab with
    # AdamW for 20 steps, once through the kernel and once through eager torch.
    vocab, dim = 67, 16
    torch.manual_seed(3)
    emb0, w0 = torch.randn(vocab, dim), 0.1 * torch.randn(vocab, dim)
    tokens = torch.randint(0, vocab, (20, 16))
    targets = (7 * tokens) % vocab
    targets[:, :2] = -100
    losses = {}
    for name in ("fused", "eager"):
        emb = torch.nn.Parameter(emb0.clone().to(DEVICE))
        w = torch.nn.Parameter(w0.clone().to(DEVICE))
        opt = torch.optim.AdamW([emb, w], lr=5e-2)
        losses[name] = []
        for step in range(20):
            h, y = emb[tokens[step].to(DEVICE)], targets[step].to(DEVICE)
            if name == "fused":
                loss, _ = fused_linear_cross_entropy_triton(h, w, y, z_loss=1e-4, chunk_size=8)
            else:
                loss, _ = reference.fused_linear_cross_entropy(h, w, y, z_loss=1e-4)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    fused, eager = torch.tensor(losses["fused"]), torch.tensor(losses["eager"])
    assert fused[-1] < 0.7 * fused[0]  # it learns
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-4)


def test_rejects_mismatched_shapes():
    h, w, labels = _data(torch.float32)
    with pytest.raises(ValueError, match="labels"):
        fused_linear_cross_entropy_triton(h, w, labels[:-1])
