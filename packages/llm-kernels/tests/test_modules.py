"""Modules and top-level dispatch (reference path on CPU), and torch.compile over the custom ops."""

import os

import pytest
import torch
import torch.nn.functional as F

import llm_kernels
from llm_formats.device import resolve_device
from llm_kernels import modules, reference

HAS_TRITON_PATH = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def test_rms_norm_module_matches_torch_and_state_dict_keys():
    torch.manual_seed(0)
    ours, theirs = modules.RMSNorm(24, eps=1e-5), torch.nn.RMSNorm(24, eps=1e-5)
    theirs.weight.data.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict())  # same keys and shapes
    x = torch.randn(3, 5, 24)
    torch.testing.assert_close(ours(x), theirs(x))
    y, s = ours(x, residual=x)
    torch.testing.assert_close(s, 2 * x)
    torch.testing.assert_close(y, theirs(2 * x))


def test_rms_norm_offset_parametrisation_starts_at_identity_scale():
    m = modules.RMSNorm(8, offset=1.0)
    assert torch.count_nonzero(m.weight) == 0  # scale = 1 + 0
    x = torch.randn(2, 8)
    torch.testing.assert_close(m(x), F.rms_norm(x, (8,), eps=1e-6))


def test_swiglu_module_and_fused_form_agree():
    g, u = torch.randn(4, 10), torch.randn(4, 10)
    m = modules.SwiGLU()
    torch.testing.assert_close(m(g, u), F.silu(g) * u)
    torch.testing.assert_close(m(torch.cat((g, u), -1)), F.silu(g) * u)


def test_fused_linear_cross_entropy_module_flattens_batches():
    torch.manual_seed(1)
    h, w = torch.randn(2, 5, 8), torch.randn(11, 8)
    labels = torch.randint(0, 11, (2, 5))
    loss, z = modules.FusedLinearCrossEntropy(z_loss=0.0)(h, w, labels)
    torch.testing.assert_close(loss, F.cross_entropy((h @ w.T).flatten(0, 1), labels.flatten()))
    assert z.item() > 0
    with pytest.raises(ValueError, match="label_smoothing"):
        modules.FusedLinearCrossEntropy(label_smoothing=1.5)


def test_top_level_functions_use_the_reference_on_cpu():
    x, w = torch.randn(3, 6), torch.rand(6)
    assert torch.equal(llm_kernels.rms_norm(x, w), reference.rms_norm(x, w))
    q, k = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 1, 4)
    cos, sin = torch.ones(2, 2), torch.zeros(2, 2)
    qo, ko = llm_kernels.apply_rope(q, k, cos, sin)
    assert torch.equal(qo, q) and torch.equal(ko, k)  # zero angle is the identity


@pytest.mark.skipif(not HAS_TRITON_PATH, reason="needs a CUDA GPU or TRITON_INTERPRET=1")
def test_custom_ops_compile_without_graph_breaks():
    from llm_kernels.ops.linear_cross_entropy import fused_linear_cross_entropy_triton
    from llm_kernels.ops.rms_norm import rms_norm_residual_triton
    from llm_kernels.ops.rope import apply_rope_triton
    from llm_kernels.ops.swiglu import swiglu_fused_triton

    def block(x, r, w, gu, q, k, cos, sin, wout, labels):
        y, s = rms_norm_residual_triton(x, r, w)
        qo, ko = apply_rope_triton(q, k, cos, sin)
        h = swiglu_fused_triton(gu) + y + s + qo.sum() + ko.sum()
        return fused_linear_cross_entropy_triton(h, wout, labels)[0]

    torch.manual_seed(2)
    dev = resolve_device("auto", cuda_available=torch.cuda.is_available())
    args = [torch.randn(4, 8), torch.randn(4, 8), torch.rand(8), torch.randn(4, 16),
            torch.randn(1, 4, 2, 4), torch.randn(1, 4, 1, 4), torch.ones(4, 2), torch.zeros(4, 2),
            torch.randn(5, 8)]  # fmt: skip
    args = [a.to(dev).requires_grad_() for a in args] + [torch.tensor([0, 1, -100, 4]).to(dev)]
    # aot_eager traces forward and backward through the fake kernels; fullgraph fails on a break.
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    loss = compiled(*args)
    loss.backward()
    want = block(*[a.detach().requires_grad_() if a.is_floating_point() else a for a in args])
    torch.testing.assert_close(loss, want)
    assert args[0].grad is not None and args[8].grad is not None
