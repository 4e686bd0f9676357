"""Pure-torch reference implementations of every op.

These are the CPU path of the top-level functions and the oracle the tests compare the Triton
kernels against. They compute in float32 (float64 when given float64) and cast the result back to
the input dtype, which is the numerical contract the kernels follow too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "apply_rope",
    "fused_linear_cross_entropy",
    "rms_norm",
    "rms_norm_residual",
    "swiglu",
    "swiglu_fused",
]


def _acc(x: torch.Tensor) -> torch.dtype:
    # Accumulate in float32 for 16-bit inputs, keep float64 for float64 (gradcheck, oracles).
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, offset: float = 0.0
) -> torch.Tensor:
    """RMSNorm over the last dim: ``y = x / sqrt(mean(x**2) + eps) * (offset + weight)``.

    Args:
        x: ``(..., N)`` input.
        weight: ``(N,)`` scale; ``offset=1.0`` gives the Gemma-style ``(1 + w)`` parametrisation.
        eps: added to the mean square before the square root.
        offset: constant added to ``weight``.

    Returns:
        ``(..., N)`` tensor in ``x.dtype``.
    """
    acc = _acc(x)
    xf = x.to(acc)
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * rstd * (offset + weight.to(acc))).to(x.dtype)


def rms_norm_residual(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then RMSNorm: returns ``(rms_norm(x + residual), x + residual)``.

    The sum is rounded to ``x.dtype`` before it is normalised, exactly as an unfused
    ``h = x + residual; y = norm(h)`` would do.
    """
    s = x + residual
    return rms_norm(s, weight, eps, offset), s


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation ``silu(gate) * up`` (elementwise, same shapes)."""
    acc = _acc(gate)
    return (F.silu(gate.to(acc)) * up.to(acc)).to(gate.dtype)


def swiglu_fused(gate_up: torch.Tensor) -> torch.Tensor:
    """SwiGLU on a fused projection output ``gate_up = [gate | up]`` (last dim ``2F`` -> ``F``)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return swiglu(gate, up)


def _rotate(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool
) -> torch.Tensor:
    # x: (B, T, H, D); cos, sin: (T, R/2). Rotates the first R dims, passes the rest through.
    acc = _acc(x)
    half = cos.shape[-1]
    rot, rest = x[..., : 2 * half].to(acc), x[..., 2 * half :]
    c = cos.to(acc)[None, :, None, :]  # (1, T, 1, R/2)
    s = sin.to(acc)[None, :, None, :]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    else:
        x1, x2 = rot[..., :half], rot[..., half:]
        out = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    return torch.cat((out.to(x.dtype), rest), dim=-1)


def apply_rope(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    interleaved: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding on q and k.

    Args:
        q: ``(B, T, H, D)``.
        k: ``(B, T, H_kv, D)`` (may have fewer heads than q).
        cos: ``(T, R/2)`` with ``R <= D`` the rotary dims (partial rotary when ``R < D``).
        sin: ``(T, R/2)``.
        interleaved: pairs are ``(2i, 2i+1)`` (Meta layout) instead of ``(i, i + R/2)``
            (GPT-NeoX / Hugging Face Llama half-split layout).

    Returns:
        Rotated ``(q, k)`` with the input shapes and dtypes.
    """
    return _rotate(q, cos, sin, interleaved), _rotate(k, cos, sin, interleaved)


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``hidden @ weight.T`` against ``labels``, plus a z-loss term.

    ``loss = mean_i[ce_i] + z_loss * mean_i[lse_i**2]`` over tokens whose label is not
    ``ignore_index``; ``z = mean_i[lse_i**2]`` is returned detached for logging. With no valid
    token both are 0 (not NaN). This reference materialises the logits; the kernel does not.

    Args:
        hidden: ``(N, d)``.
        weight: ``(V, d)``.
        labels: ``(N,)`` int64.
        ignore_index: label value that contributes nothing.
        label_smoothing: mass spread uniformly over the vocab, as in ``F.cross_entropy``.
        z_loss: coefficient of the ``lse**2`` penalty.

    Returns:
        ``(loss, z)`` float32 scalars (float64 for float64 inputs).
    """
    acc = _acc(hidden)
    logits = (hidden @ weight.T).to(acc)
    valid = labels != ignore_index
    n_valid = valid.sum().clamp(min=1)
    ce = F.cross_entropy(
        logits, labels, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="sum"
    )
    lse = torch.logsumexp(logits, dim=-1)
    z = (lse.pow(2) * valid).sum() / n_valid
    loss = ce / n_valid + z_loss * z
    return loss, z.detach()
