"""Mixture-of-experts FFN: top-k router, load-balancing and router z-losses, dropless dispatch.

Tokens are sorted by expert and each expert runs one matmul over its contiguous slice
(sort-and-scatter); the only Python loop is over experts, never over tokens. No capacity
limit: every routed token is computed (dropless, as in MegaBlocks).
"""

from __future__ import annotations

import torch
from torch import nn

from llm_model.config import ModelConfig
from llm_model.feedforward import FeedForward, activate

__all__ = ["MoE"]


class MoE(nn.Module):
    """Routed experts (weights stacked as (E, ...) tensors) plus optional shared experts.

    After each forward, ``aux_loss`` holds the weighted auxiliary loss of this layer
    (moe_aux_coef * load balancing + moe_router_z_coef * router z-loss), and
    ``lb_loss`` / ``router_z_loss`` the unweighted parts.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        E, d, h = config.n_experts, config.d_model, config.expert_hidden_dim
        self.router = nn.Linear(d, E, bias=False)
        self.w1 = nn.Parameter(torch.empty(E, h, d))  # gate, (E, out, in) like nn.Linear
        self.w3 = nn.Parameter(torch.empty(E, h, d)) if config.gated else None  # up
        self.w2 = nn.Parameter(torch.empty(E, d, h))  # down
        self.shared = None
        if config.moe_shared_experts:
            self.shared = FeedForward(config, hidden=h * config.moe_shared_experts)
        self.aux_loss = self.lb_loss = self.router_z_loss = None
        if not self.w1.is_meta:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std) experts; the Transformer's init_weights applies the chosen scheme."""
        for w in (self.w1, self.w2, self.w3):
            if w is not None:
                nn.init.normal_(w, std=self.config.init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, d)
        logits = self.router(x)  # (N, E), routed in at least float32
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        probs = logits.softmax(-1)
        weights, experts = probs.topk(self.config.moe_top_k, dim=-1)  # (N, k)
        weights = weights / weights.sum(-1, keepdim=True)
        self._aux_losses(logits, probs, experts)
        y = self._dispatch(x, experts.flatten(), weights.flatten().to(x.dtype))
        if self.shared is not None:
            y = y + self.shared(x)
        return y.view(shape)

    def _dispatch(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor):
        """Sort the N*k (token, expert) pairs by expert, run each expert on its slice, scatter."""
        k = self.config.moe_top_k
        order = experts.argsort(stable=True)
        token = order // k  # token index of each sorted pair
        counts = self._counts(experts)
        xs = x[token]  # (N*k, d) gathered in expert order
        out = torch.empty_like(xs)
        start = 0
        for e, n in enumerate(counts):
            if n:
                chunk = xs[start : start + n]
                up = chunk @ self.w3[e].t() if self.w3 is not None else None
                hidden = activate(self.config.activation, chunk @ self.w1[e].t(), up, False)
                out[start : start + n] = hidden @ self.w2[e].t()
            start += n
        out = out * weights[order].unsqueeze(-1)
        return torch.zeros_like(x).index_add_(0, token, out)

    def _counts(self, experts: torch.Tensor) -> list[int]:
        E = self.config.n_experts
        if experts.is_meta:  # shapes only (meta-device FLOP/memory checks): an even split
            n = experts.numel()
            return [n // E + (e < n % E) for e in range(E)]
        return torch.bincount(experts, minlength=E).tolist()

    def _aux_losses(self, logits, probs, experts) -> None:
        E = self.config.n_experts
        # Switch Transformer: E * sum_e (fraction of routed slots to e) * (mean prob of e)
        ones = probs.new_ones(experts.numel())
        frac = probs.new_zeros(E).scatter_add_(0, experts.flatten(), ones)
        frac = frac / experts.numel()
        self.lb_loss = E * (frac * probs.mean(0)).sum()
        self.router_z_loss = torch.logsumexp(logits, -1).pow(2).mean()  # ST-MoE
        c = self.config
        self.aux_loss = c.moe_aux_coef * self.lb_loss + c.moe_router_z_coef * self.router_z_loss
