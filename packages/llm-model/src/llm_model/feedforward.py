"""Position-wise feed-forward networks: SwiGLU, GeGLU, GELU, ReLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm_model import _kernels
from llm_model.config import ModelConfig

__all__ = ["FeedForward", "activate"]


def activate(activation: str, gate: torch.Tensor, up: torch.Tensor | None, kernels: bool):
    """Apply the FFN non-linearity.

    Gated: swiglu = silu(gate) * up (Shazeer 2020), geglu = gelu(gate) * up.
    Plain: gelu(gate) (exact erf form) or relu(gate); ``up`` is None.
    """
    if activation == "swiglu":
        if _kernels.available(kernels, gate):
            return _kernels.llm_kernels.swiglu(gate, up)
        if not torch.is_grad_enabled():  # inference: reuse the gate's memory (2x faster on CPU)
            return F.silu(gate, inplace=True).mul_(up)
        return F.silu(gate) * up
    if activation == "geglu":
        return F.gelu(gate) * up
    if activation == "gelu":
        return F.gelu(gate)
    return F.relu(gate)


class FeedForward(nn.Module):
    """w2(act(w1 x) [* w3 x]); w1 = gate, w3 = up (gated only), w2 = down (Llama names)."""

    def __init__(self, config: ModelConfig, hidden: int | None = None) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim if hidden is None else hidden
        self.w1 = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.w3 = nn.Linear(config.d_model, hidden, bias=config.bias) if config.gated else None
        self.w2 = nn.Linear(hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.w3(x) if self.w3 is not None else None
        return self.w2(activate(self.config.activation, self.w1(x), up, self.config.kernels))
