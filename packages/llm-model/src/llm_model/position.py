"""Position encodings: rotary (RoPE, full or partial) and ALiBi slopes/biases.

Learned absolute positions are a plain ``nn.Embedding`` in the transformer.
"""

from __future__ import annotations

import math

import torch

__all__ = ["rope_cos_sin", "apply_rope", "alibi_slopes", "alibi_bias"]


def rope_cos_sin(
    positions: torch.Tensor, rotary_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles pos * theta^(-2i/rotary_dim), i < rotary_dim/2.

    Args:
        positions: Integer positions, shape (T,) or (B, T).
        rotary_dim: Number of rotated dims (even).
        theta: RoPE base.

    Returns:
        (cos, sin), float32, shape positions.shape + (rotary_dim // 2,).
    """
    i = torch.arange(0, rotary_dim, 2, device=positions.device, dtype=torch.float32)
    inv_freq = 1.0 / (theta ** (i / rotary_dim))
    angles = positions.float().unsqueeze(-1) * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False
) -> torch.Tensor:
    """Rotate the first 2*cos.shape[-1] dims of every head of x.

    Pair (a, b) becomes (a cos - b sin, b cos + a sin): multiplication of the complex number
    a + ib by e^{i angle}. Pairs are (2i, 2i+1) if interleaved, else (i, i + rot/2).

    Args:
        x: (B, T, H, D).
        cos: (T, rot/2) or (B, T, rot/2), float32.
        sin: Same shape as cos.
        interleaved: Pair layout, see above.

    Returns:
        Tensor like x, the last D - rot dims unchanged.
    """
    rot = 2 * cos.shape[-1]
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (..., T, 1, rot/2) broadcasts over heads
    xr, rest = x[..., :rot].float(), x[..., rot:]
    if interleaved:
        a, b = xr[..., 0::2], xr[..., 1::2]
    else:
        a, b = xr[..., : rot // 2], xr[..., rot // 2 :]
    ra, rb = a * cos - b * sin, b * cos + a * sin
    # interleaved: back to (a0, b0, a1, b1, ...); else (a0, a1, ..., b0, b1, ...)
    out = torch.stack((ra, rb), -1).flatten(-2) if interleaved else torch.cat((ra, rb), -1)
    return torch.cat((out.to(x.dtype), rest), dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi head slopes (Press et al. 2022): 2^(-8h/n) for h = 1..n, n a power of two.

    For other n, the slopes of the nearest lower power of two m, then every other slope of 2m.
    """

    def powers(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    m = 2 ** math.floor(math.log2(n_heads))
    slopes = powers(m) + powers(2 * m)[0::2][: n_heads - m]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """Additive attention bias -slope_h * (q_pos - k_pos).

    Args:
        slopes: (H,).
        q_pos: (Tq,) or (B, Tq) query positions.
        k_pos: (Tk,) or (B, Tk) key positions.

    Returns:
        float32 bias, (1, H, Tq, Tk) or (B, H, Tq, Tk).
    """
    dist = (q_pos.unsqueeze(-1) - k_pos.unsqueeze(-2)).float()  # (..., Tq, Tk)
    bias = -slopes.view(-1, 1, 1).to(dist.device) * dist.unsqueeze(-3)
    return bias if bias.dim() == 4 else bias.unsqueeze(0)
