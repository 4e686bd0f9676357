"""Parameter and FLOP counts.

Two FLOP counts per trained token (forward + backward = 3 x forward):

* ``foundry_flops_per_token``: llm-foundry's formula, 6 * N + 12 * L * d_model * T, with N all
  parameters (embeddings included, shared ones once; for MoE only the active experts). This
  is the number MosaicML's MFU tables use; use it to compare MFU with them.
* ``exact_flops_per_token``: 6 * N_matmul + 12 * L * H * head_dim * T_eff, with N_matmul the
  matrix weights that multiply activations (no lookup tables, no norms or biases; a tied head
  counted once; MoE active experts only, router included), so the K/V projections are
  counted at their true width n_kv_heads * head_dim under GQA/MQA. T_eff is the mean number
  of keys a query attends to: (T + 1) / 2 under the causal mask, and min(t, window) averaged
  over positions under sliding-window attention. GQA does not change T_eff: every query
  head still scores every key it attends to.
"""

from __future__ import annotations

from torch import nn

from llm_model.moe import MoE

__all__ = ["num_params", "active_params", "foundry_flops_per_token", "exact_flops_per_token"]


def num_params(model: nn.Module, exclude_embeddings: bool = False) -> int:
    """Parameters of a Transformer, each shared tensor once.

    Args:
        model: A Transformer.
        exclude_embeddings: Leave out the token embedding and learned position table (an
            untied output head stays: it is a matmul).
    """
    total = sum(p.numel() for p in model.parameters())
    if exclude_embeddings:
        total -= _embedding_params(model)
    return total


def _embedding_params(model: nn.Module) -> int:
    n = model.tok_emb.weight.numel()
    return n + (model.pos_emb.weight.numel() if model.pos_emb is not None else 0)


def _inactive_expert_params(model: nn.Module) -> int:
    inactive = 0
    for m in model.modules():
        if isinstance(m, MoE):
            per_expert = sum(w.numel() for w in (m.w1, m.w2, m.w3) if w is not None)
            per_expert //= m.config.n_experts
            inactive += per_expert * (m.config.n_experts - m.config.moe_top_k)
    return inactive


def active_params(model: nn.Module) -> int:
    """Parameters used per token: all, less the experts a token is not routed to."""
    return num_params(model) - _inactive_expert_params(model)


def foundry_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """llm-foundry: 6 * N_active + 12 * n_layers * d_model * seq_len (see module docstring)."""
    c = model.config
    return 6.0 * active_params(model) + 12.0 * c.n_layers * c.d_model * seq_len


def mean_keys_per_query(seq_len: int, window: int = 0) -> float:
    """Mean number of keys a query attends to under a causal (sliding-window) mask."""
    if not window or window >= seq_len:
        return (seq_len + 1) / 2
    # positions t = 1..T attend to min(t, W) keys
    return (window * (window + 1) / 2 + (seq_len - window) * window) / seq_len


def exact_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """6 * N_matmul + 12 * L * H * head_dim * T_eff (see module docstring)."""
    c = model.config
    matmul = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    matmul -= model.pos_emb.weight.numel() if model.pos_emb is not None else 0
    if model.output is not None:  # untied: the input table is a lookup, not a matmul
        matmul -= model.tok_emb.weight.numel()
    matmul -= _inactive_expert_params(model)
    t_eff = mean_keys_per_query(seq_len, c.sliding_window)
    return 6.0 * matmul + 12.0 * c.n_layers * c.n_heads * c.dim_per_head * t_eff
