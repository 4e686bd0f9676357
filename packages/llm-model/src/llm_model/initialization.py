"""Weight initialisation schemes: "normal", "scaled" (GPT-2) and "mitchell" (OLMo).

All schemes zero the biases and reset norms to weight 1. Output projections are attn.wo,
the FFN down projection w2 and the MoE experts' w2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llm_model.attention import Attention
from llm_model.config import ModelConfig
from llm_model.feedforward import FeedForward
from llm_model.moe import MoE
from llm_model.norm import LayerNorm, RMSNorm

__all__ = ["init_weights"]


def _normal(t: torch.Tensor, std: float, truncate: bool = False) -> None:
    if truncate:
        nn.init.trunc_normal_(t, mean=0.0, std=std, a=-3 * std, b=3 * std)
    else:
        nn.init.normal_(t, mean=0.0, std=std)


def _stds(config: ModelConfig, fan_in: int, layer_id: int) -> tuple[float, float]:
    """(std of input projections, std of output projections) in block ``layer_id``."""
    if config.init == "mitchell":
        return fan_in**-0.5, 1.0 / math.sqrt(2 * fan_in * (layer_id + 1))
    if config.init == "scaled":
        return config.init_std, config.init_std / math.sqrt(2 * config.n_layers)
    return config.init_std, config.init_std


def _init_linear(linear: nn.Linear, std: float, truncate: bool) -> None:
    _normal(linear.weight, std, truncate)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def _init_block_module(config: ModelConfig, module: nn.Module, layer_id: int) -> None:
    trunc = config.init == "mitchell"
    if isinstance(module, Attention):
        std_in, std_out = _stds(config, config.d_model, layer_id)
        for lin in (module.wq, module.wk, module.wv):
            _init_linear(lin, std_in, trunc)
        _init_linear(module.wo, _stds(config, module.wo.in_features, layer_id)[1], trunc)
    elif isinstance(module, FeedForward):
        std_in = _stds(config, config.d_model, layer_id)[0]
        for lin in (module.w1, module.w3):
            if lin is not None:
                _init_linear(lin, std_in, trunc)
        _init_linear(module.w2, _stds(config, module.w2.in_features, layer_id)[1], trunc)
    elif isinstance(module, MoE):
        std_in = _stds(config, config.d_model, layer_id)[0]
        _init_linear(module.router, std_in, trunc)
        for w in (module.w1, module.w3):
            if w is not None:
                _normal(w, std_in, trunc)
        _normal(module.w2, _stds(config, module.w2.shape[-1], layer_id)[1], trunc)


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """Initialise every parameter of a Transformer in place, following ``model.config.init``.

    Works after ``to_empty()`` on a model built on the meta device (torchtitan style).
    """
    config: ModelConfig = model.config
    trunc = config.init == "mitchell"
    emb_std = config.d_model**-0.5 if trunc else config.init_std
    _normal(model.tok_emb.weight, emb_std, trunc)
    if model.pos_emb is not None:
        _normal(model.pos_emb.weight, emb_std, trunc)
    if model.output is not None:
        _normal(model.output.weight, config.d_model**-0.5 if trunc else config.init_std, trunc)
    for layer_id, block in enumerate(model.blocks):
        for module in block.modules():
            if isinstance(module, (RMSNorm, LayerNorm)):
                module.reset_parameters()
            _init_block_module(config, module, layer_id)
    if model.norm is not None:
        model.norm.reset_parameters()
