import pytest
import torch
import torch.nn.functional as F

from llm_model import ModelConfig
from llm_model.feedforward import FeedForward
from llm_model.norm import RMSNorm


def ffn(activation):
    torch.manual_seed(0)
    return FeedForward(ModelConfig(d_model=32, n_layers=1, n_heads=4, activation=activation))


@pytest.mark.parametrize(
    "activation, formula",
    [
        ("swiglu", lambda m, x: m.w2(F.silu(m.w1(x)) * m.w3(x))),
        ("geglu", lambda m, x: m.w2(F.gelu(m.w1(x)) * m.w3(x))),
        ("gelu", lambda m, x: m.w2(0.5 * m.w1(x) * (1 + torch.erf(m.w1(x) / 2**0.5)))),
        ("relu", lambda m, x: m.w2(m.w1(x).clamp(min=0))),
    ],
)
def test_activation_formulas(activation, formula):
    m = ffn(activation)
    x = torch.randn(3, 5, 32)
    torch.testing.assert_close(m(x), formula(m, x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference takes an in-place path for swiglu: same numbers
        torch.testing.assert_close(m(x), formula(m, x), atol=1e-5, rtol=1e-5)
    assert (m.w3 is not None) == activation.endswith("glu")
    assert m.w1.out_features == (256 if activation.endswith("glu") else 128)


def test_matches_llm_kernels_reference():
    reference = pytest.importorskip(
        "llm_kernels.reference", reason="llm-kernels (optional [kernels] extra) not installed"
    )
    torch.manual_seed(0)
    gate, up = torch.randn(4, 8, 64), torch.randn(4, 8, 64)
    torch.testing.assert_close(F.silu(gate) * up, reference.swiglu(gate, up))
    norm = RMSNorm(64, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(4, 8, 64)
    torch.testing.assert_close(norm(x), reference.rms_norm(x, norm.weight, eps=1e-6))
