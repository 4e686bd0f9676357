"""Top-level ops: the Triton kernel for CUDA inputs, the pure-torch reference otherwise.

The Triton modules are imported lazily so that importing ``llm_kernels`` on a machine without
Triton (macOS, Windows) still gives the reference path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from llm_kernels import reference

__all__ = [
    "triton_on_cpu",
    "use_triton",
    "apply_rope",
    "fused_linear_cross_entropy",
    "rms_norm",
    "rms_norm_residual",
    "swiglu",
    "swiglu_fused",
]

_TRITON_ON_CPU = False


def use_triton(x: torch.Tensor) -> bool:
    """True when ops on ``x`` run the Triton kernel: on CUDA, or inside ``triton_on_cpu()``."""
    return x.is_cuda or _TRITON_ON_CPU


@contextlib.contextmanager
def triton_on_cpu() -> Iterator[None]:
    """Run the Triton kernels on CPU tensors too, in Triton's interpreter (for tests).

    ``TRITON_INTERPRET=1`` must be set before Triton is first imported; without it a kernel
    launch on CPU tensors fails.
    """
    global _TRITON_ON_CPU
    previous, _TRITON_ON_CPU = _TRITON_ON_CPU, True
    try:
        yield
    finally:
        _TRITON_ON_CPU = previous


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, offset: float = 0.0
) -> torch.Tensor:
    """RMSNorm over the last dim: ``x / sqrt(mean(x**2) + eps) * (offset + weight)``."""
    if use_triton(x):
        from llm_kernels.ops.rms_norm import rms_norm_triton

        return rms_norm_triton(x, weight, eps, offset)
    return reference.rms_norm(x, weight, eps, offset)


def rms_norm_residual(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused ``s = x + residual; (rms_norm(s), s)``; ``s`` feeds the next residual."""
    if use_triton(x):
        from llm_kernels.ops.rms_norm import rms_norm_residual_triton

        return rms_norm_residual_triton(x, residual, weight, eps, offset)
    return reference.rms_norm_residual(x, residual, weight, eps, offset)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up``."""
    if use_triton(gate):
        from llm_kernels.ops.swiglu import swiglu_triton

        return swiglu_triton(gate, up)
    return reference.swiglu(gate, up)


def swiglu_fused(gate_up: torch.Tensor) -> torch.Tensor:
    """SwiGLU of a fused projection ``gate_up = [gate | up]`` (last dim 2F -> F)."""
    if use_triton(gate_up):
        from llm_kernels.ops.swiglu import swiglu_fused_triton

        return swiglu_fused_triton(gate_up)
    return reference.swiglu_fused(gate_up)


def apply_rope(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    interleaved: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of q ``(B, T, H, D)`` and k ``(B, T, H_kv, D)``; cos/sin ``(T, R/2)``."""
    if use_triton(q):
        from llm_kernels.ops.rope import apply_rope_triton

        return apply_rope_triton(q, k, cos, sin, interleaved)
    return reference.apply_rope(q, k, cos, sin, interleaved)


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``hidden @ weight.T`` plus ``z_loss * mean(lse**2)``; returns ``(loss, z)``.

    On CUDA the logits are never materialised whole (see ``ops.linear_cross_entropy``).
    """
    kwargs = dict(ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss)
    if use_triton(hidden):
        from llm_kernels.ops.linear_cross_entropy import fused_linear_cross_entropy_triton

        return fused_linear_cross_entropy_triton(hidden, weight, labels, **kwargs)
    return reference.fused_linear_cross_entropy(hidden, weight, labels, **kwargs)
