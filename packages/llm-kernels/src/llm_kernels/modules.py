"""Drop-in ``nn.Module`` wrappers; state-dict keys match their torch counterparts."""

from __future__ import annotations

import torch
from torch import nn

from llm_kernels import dispatch

__all__ = ["FusedLinearCrossEntropy", "RMSNorm", "SwiGLU"]


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale; keys match ``torch.nn.RMSNorm`` (``weight``).

    Args:
        dim: normalised (last) dimension.
        eps: added to the mean square.
        offset: the scale is ``offset + weight``; ``offset=1.0`` with weight initialised to 0
            is the Gemma parametrisation (weight decay pulls the scale towards 1).
    """

    def __init__(self, dim: int, eps: float = 1e-6, offset: float = 0.0) -> None:
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """``norm(x)``, or ``(norm(x + residual), x + residual)`` when a residual is given."""
        if residual is None:
            return dispatch.rms_norm(x, self.weight, self.eps, self.offset)
        return dispatch.rms_norm_residual(x, residual, self.weight, self.eps, self.offset)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, offset={self.offset}"


class SwiGLU(nn.Module):
    """Parameter-free SwiGLU activation: ``forward(gate, up)`` or ``forward(gate_up)``."""

    def forward(self, gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        if up is None:
            return dispatch.swiglu_fused(gate)
        return dispatch.swiglu(gate, up)


class FusedLinearCrossEntropy(nn.Module):
    """Loss module taking the unembedding weight as an argument (it belongs to the model).

    ``forward(hidden (N, d), weight (V, d), labels (N,)) -> (loss, z)``; see
    :func:`llm_kernels.fused_linear_cross_entropy`.
    """

    def __init__(
        self, ignore_index: int = -100, label_smoothing: float = 0.0, z_loss: float = 0.0
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1]")
        if z_loss < 0.0:
            raise ValueError(f"z_loss={z_loss} must be >= 0")
        self.ignore_index, self.label_smoothing, self.z_loss = ignore_index, label_smoothing, z_loss

    def forward(
        self, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return dispatch.fused_linear_cross_entropy(
            hidden.reshape(-1, hidden.shape[-1]),
            weight,
            labels.reshape(-1),
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
        )
