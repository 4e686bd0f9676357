"""Position encodings: rotary (RoPE, full or partial, with context-extension scaling) and ALiBi.

Learned absolute positions are a plain ``nn.Embedding`` in the transformer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "RopeScaling",
    "rope_inv_freq",
    "rope_cos_sin",
    "apply_rope",
    "alibi_slopes",
    "alibi_bias",
]


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE frequencies are stretched to run past the pretraining context.

    The three kinds Hugging Face's Llama reads (``rope_scaling`` in config.json), same formulas:
    "linear" (position interpolation: every frequency / factor), "yarn" (NTK-by-parts: low
    frequencies interpolated, high ones kept, a ramp between, cos/sin times an attention factor)
    and "llama3" (Llama 3.1: long wavelengths / factor, short kept, smooth in between).

    Attributes:
        kind: "linear", "yarn" or "llama3".
        factor: Context extension factor (> 0; >= 1 in practice).
        original_max_seq_len: Pretraining context (yarn, llama3; > 0).
        low_freq_factor: llama3: wavelengths above original / low_freq_factor are divided.
        high_freq_factor: llama3: wavelengths below original / high_freq_factor are kept.
        beta_fast: yarn: rotations that bound the kept (extrapolated) dims.
        beta_slow: yarn: rotations that bound the interpolated dims.
        attention_factor: yarn: cos/sin multiplier (0 = 0.1 ln(factor) + 1, YaRN's mscale).
    """

    kind: str
    factor: float
    original_max_seq_len: int = 0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float = 0.0

    @property
    def cos_sin_scale(self) -> float:
        """Multiplier of cos and sin (yarn's attention factor; 1 otherwise)."""
        if self.kind != "yarn":
            return 1.0
        if self.attention_factor:
            return self.attention_factor
        return 1.0 if self.factor <= 1 else 0.1 * math.log(self.factor) + 1.0


def rope_inv_freq(
    rotary_dim: int, theta: float, scaling: RopeScaling | None = None, device=None
) -> torch.Tensor:
    """Rotation frequencies theta^(-2i/rotary_dim), i < rotary_dim/2, scaled if asked (float32)."""
    i = torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32)
    inv_freq = 1.0 / (theta ** (i / rotary_dim))
    if scaling is None:
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    if scaling.kind == "llama3":
        return _llama3_inv_freq(inv_freq, scaling)
    if scaling.kind == "yarn":
        return _yarn_inv_freq(inv_freq, rotary_dim, theta, scaling)
    raise ValueError(
        f"RopeScaling.kind={scaling.kind!r} is not one of ['linear', 'yarn', 'llama3']"
    )


def _llama3_inv_freq(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    wavelen = 2 * math.pi / inv_freq
    low_wavelen = s.original_max_seq_len / s.low_freq_factor  # longer: interpolate fully
    high_wavelen = s.original_max_seq_len / s.high_freq_factor  # shorter: keep
    smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    between = (1 - smooth) * inv_freq / s.factor + smooth * inv_freq
    out = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, between, out)


def _yarn_inv_freq(inv_freq: torch.Tensor, dim: int, theta: float, s: RopeScaling) -> torch.Tensor:
    def dim_of(rotations: float) -> float:  # the dim whose wavelength fits `rotations` times
        return (
            dim
            * math.log(s.original_max_seq_len / (rotations * 2 * math.pi))
            / (2 * math.log(theta))
        )

    low = max(math.floor(dim_of(s.beta_fast)), 0)
    high = min(math.ceil(dim_of(s.beta_slow)), dim - 1)
    high = high + 0.001 if low == high else high  # no zero-width ramp
    ramp = (torch.arange(dim // 2, dtype=torch.float32, device=inv_freq.device) - low) / (
        high - low
    )
    keep = 1 - ramp.clamp(0, 1)  # 1: extrapolate (high frequencies), 0: interpolate
    return inv_freq / s.factor * (1 - keep) + inv_freq * keep


def rope_cos_sin(
    positions: torch.Tensor, rotary_dim: int, theta: float, scaling: RopeScaling | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles pos * inv_freq (see ``rope_inv_freq``).

    Args:
        positions: Integer positions, shape (T,) or (B, T).
        rotary_dim: Number of rotated dims (even).
        theta: RoPE base.
        scaling: Context-extension scaling of the frequencies (None: plain RoPE).

    Returns:
        (cos, sin), float32, shape positions.shape + (rotary_dim // 2,).
    """
    inv_freq = rope_inv_freq(rotary_dim, theta, scaling, positions.device)
    angles = positions.float().unsqueeze(-1) * inv_freq
    if scaling is None or scaling.cos_sin_scale == 1.0:
        return angles.cos(), angles.sin()
    return angles.cos() * scaling.cos_sin_scale, angles.sin() * scaling.cos_sin_scale


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
    if rest.shape[-1] == 0:  # every dim rotated (the usual case): no second copy
        return out.to(x.dtype)
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
