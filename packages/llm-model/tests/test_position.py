import math

import pytest
import torch

from llm_model import ModelConfig
from llm_model.position import (
    RopeScaling,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_cos_sin,
    rope_inv_freq,
)


def complex_rope(x, positions, theta, pairs):
    """Reference: view (x[a], x[b]) pairs as complex numbers and multiply by e^{i pos w}."""
    D = x.shape[-1]
    w = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    rot = torch.polar(torch.ones_like(w), positions.double()[:, None] * w)  # (T, D/2)
    a, b = pairs
    z = torch.complex(x[..., a].double(), x[..., b].double()) * rot[None, :, None, :]
    out = x.double().clone()
    out[..., a], out[..., b] = z.real, z.imag
    return out


def test_rope_equals_complex_multiplication_both_layouts():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 16, dtype=torch.float64)
    pos = torch.arange(7)
    cos, sin = rope_cos_sin(pos, 16, 10000.0)
    half = (torch.arange(8), torch.arange(8, 16))
    inter = (torch.arange(0, 16, 2), torch.arange(1, 16, 2))
    torch.testing.assert_close(
        apply_rope(x, cos, sin), complex_rope(x, pos, 10000.0, half), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        apply_rope(x, cos, sin, interleaved=True),
        complex_rope(x, pos, 10000.0, inter),
        atol=1e-5,
        rtol=0,
    )


def test_rope_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        cq, sq = rope_cos_sin(torch.tensor([pq]), 8, 100.0)
        ck, sk = rope_cos_sin(torch.tensor([pk]), 8, 100.0)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    torch.testing.assert_close(score(5, 2), score(13, 10))
    assert not torch.allclose(score(5, 2), score(5, 3))


def test_partial_rotary_leaves_tail_unchanged():
    x = torch.randn(1, 4, 2, 16)
    cos, sin = rope_cos_sin(torch.arange(4), 4, 10000.0)  # rotary_pct = 0.25
    y = apply_rope(x, cos, sin)
    assert torch.equal(y[..., 4:], x[..., 4:])
    assert not torch.allclose(y[:, 1:, :, :4], x[:, 1:, :, :4])
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0: no rotation


def test_alibi_slopes_match_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # 12 heads: 8 slopes of 2^(-i) then odd-indexed slopes of the 16-head geometric sequence
    s16 = [2.0 ** (-(i + 1) / 2) for i in range(16)]
    expected = [2.0 ** -(i + 1) for i in range(8)] + s16[0::2][:4]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))


def test_alibi_bias_is_minus_slope_times_distance():
    slopes = alibi_slopes(4)
    bias = alibi_bias(slopes, torch.arange(5), torch.arange(5))
    assert bias.shape == (1, 4, 5, 5)
    assert bias[0, 1, 4, 1].item() == -slopes[1].item() * 3
    assert bias[0, 2, 3, 3].item() == 0.0


def test_linear_rope_scaling_is_position_interpolation():
    pos = torch.arange(0, 40)
    scaled = rope_cos_sin(pos, 16, 10000.0, RopeScaling(kind="linear", factor=4.0))
    plain = rope_cos_sin(pos.float() / 4, 16, 10000.0)
    for a, b in zip(scaled, plain, strict=True):
        torch.testing.assert_close(a, b)


def test_llama3_and_yarn_keep_high_frequencies_and_stretch_low_ones():
    plain = rope_inv_freq(64, 500000.0)
    for s in (
        RopeScaling(kind="llama3", factor=8.0, original_max_seq_len=8192),
        RopeScaling(kind="yarn", factor=8.0, original_max_seq_len=8192),
    ):
        scaled = rope_inv_freq(64, 500000.0, s)
        assert torch.equal(scaled[:4], plain[:4])  # short wavelengths: unchanged
        torch.testing.assert_close(scaled[-4:], plain[-4:] / 8)  # longest: interpolated
        assert torch.all(scaled <= plain) and torch.all(scaled >= plain / 8 * (1 - 1e-6))
    yarn = RopeScaling(kind="yarn", factor=8.0, original_max_seq_len=8192)
    cos, _ = rope_cos_sin(torch.zeros(1), 64, 500000.0, yarn)
    torch.testing.assert_close(cos, torch.full_like(cos, 0.1 * math.log(8) + 1))  # mscale


def test_rope_scaling_config_errors_name_the_field():
    with pytest.raises(ValueError, match="rope_original_max_seq_len must be > 0"):
        ModelConfig(d_model=64, n_layers=1, n_heads=4, rope_scaling="llama3", rope_factor=8.0)
    with pytest.raises(ValueError, match="rope_scaling='linear' needs position='rope'"):
        ModelConfig(d_model=64, n_layers=1, n_heads=4, position="alibi", rope_scaling="linear")
    with pytest.raises(ValueError, match="rope_scaling='ntk' is not one of"):
        ModelConfig(d_model=64, n_layers=1, n_heads=4, rope_scaling="ntk")
