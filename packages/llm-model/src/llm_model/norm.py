"""Normalisation layers: RMSNorm, LayerNorm, non-parametric LayerNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm_model import _kernels
from llm_model.config import ModelConfig

__all__ = ["RMSNorm", "LayerNorm", "build_norm"]


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 unless low_precision.

    State-dict key "weight" (same as llm_kernels.modules.RMSNorm and Hugging Face Llama).
    """

    def __init__(
        self, dim: int, eps: float = 1e-6, low_precision: bool = False, kernels: bool = True
    ) -> None:
        super().__init__()
        self.eps = eps
        self.low_precision = low_precision
        self.kernels = kernels
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _kernels.available(self.kernels and not self.low_precision, x):
            return _kernels.llm_kernels.rms_norm(x, self.weight, eps=self.eps)
        h = x if self.low_precision else x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.to(h.dtype)).to(x.dtype)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


class LayerNorm(nn.Module):
    """LayerNorm with optional weight/bias (none at all = non-parametric, OLMo-1).

    low_precision computes in the input dtype, as MPT's "low_precision_layernorm" does under
    autocast; otherwise the statistics are computed in float32.
    """

    def __init__(
        self,
        dim: int,
        eps: float = 1e-5,
        affine: bool = True,
        bias: bool = True,
        low_precision: bool = False,
    ) -> None:
        super().__init__()
        self.dim, self.eps, self.low_precision = dim, eps, low_precision
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.low_precision else x.float()
        w = None if self.weight is None else self.weight.to(h.dtype)
        b = None if self.bias is None else self.bias.to(h.dtype)
        return F.layer_norm(h, (self.dim,), w, b, self.eps).to(x.dtype)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def build_norm(config: ModelConfig, dim: int | None = None) -> nn.Module:
    """The norm that ``config.norm`` selects, over ``dim`` (default d_model)."""
    dim = config.d_model if dim is None else dim
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps, config.low_precision_norm, config.kernels)
    affine = config.norm == "layernorm"
    return LayerNorm(dim, config.norm_eps, affine, config.bias, config.low_precision_norm)
