"""One transformer block: attention and FFN sublayers with pre-, post- or sublayer-norm."""

from __future__ import annotations

import torch
from torch import nn

from llm_model.attention import Attention, AttentionInputs
from llm_model.config import ModelConfig
from llm_model.feedforward import FeedForward
from llm_model.moe import MoE
from llm_model.norm import build_norm

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """Attention then FFN (dense or MoE), each wrapped in a residual connection.

    norm_position "pre": x + f(norm(x)); "post": norm(x + f(x)); "sublayer": x + norm(f(x)).
    """

    def __init__(self, config: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.config, self.layer_id = config, layer_id
        self.attn = Attention(config, layer_id)
        self.ffn = MoE(config) if config.is_moe_layer(layer_id) else FeedForward(config)
        self.attn_norm = build_norm(config)
        self.ffn_norm = build_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, inputs: AttentionInputs, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); with ``keep`` ((N, 2) (row, position) indices) -> (N, d):
        attention queries, the FFN and the norms run on those positions only (keys and values
        on all), equal to the full block's output there."""
        x = self._residual(x, lambda h: self.attn(h, inputs, keep), self.attn_norm, keep)
        return self._residual(x, self.ffn, self.ffn_norm)

    def _residual(self, x, sublayer, norm, keep=None) -> torch.Tensor:
        where = self.config.norm_position
        skip = x if keep is None else x[keep[:, 0], keep[:, 1]]
        if where == "pre":
            return skip + self.dropout(sublayer(norm(x)))
        if where == "post":
            return norm(skip + self.dropout(sublayer(x)))
        return skip + self.dropout(norm(sublayer(x)))
