"""Mixture-of-experts FFN: top-k router, load-balancing and router z-losses, dropless dispatch.

Dispatch never reads a routing decision on the host: no ``.tolist()``/``.item()``, no shape
that depends on the data, no Python branch on a tensor. So the layer is one graph under
``torch.compile`` and can be captured in a CUDA graph. Every routed token is computed
(dropless, as in MegaBlocks). The routed experts run in one of two ways, chosen per call from
the device and the dtype (``_grouped_mm_dtype``), with the same outputs and gradients:

- **Grouped GEMM** (``torch._grouped_mm``): the N*k (token, expert) pairs are sorted by
  expert and each expert multiplies its contiguous slice, in one call whose slice ends are
  ``offs = cumsum(counts)``, a device tensor. FLOPs and memory are those of the N*k routed
  pairs. Runs on CUDA sm90/sm100 in bf16 (CUTLASS kernel), on CPU in fp32/bf16/fp16 (ATen
  loops over the groups in C++, over host memory: nothing to sync) and on meta (shapes only,
  so meta-device FLOP/memory checks see the routed cost, not the fallback's). Elsewhere (other
  GPUs, fp32 on CUDA) ATen falls back to copying ``offs`` to the host: a sync, so not used.
- **Dense fallback** (everything else, e.g. fp64, an A100, odd widths): every expert on every
  token, combined with an (N, E) gate matrix that is zero off each token's top-k. A padded
  batched matmul would need a static capacity to be sync-free, and the only capacity that is
  dropless is N per expert (top-k experts are distinct, so one expert can receive every
  token): an (E, N, d) buffer that costs exactly the dense FLOPs plus a scatter and a gather.
  So the fallback computes densely, with two plain GEMMs: E/k times the routed FLOPs and
  E/k times the (N, k, hidden) activations, i.e. 4x for moe-small (E=8, k=2), 8x for OLMoE.
"""

from __future__ import annotations

import torch
from torch import nn

from llm_model.config import ModelConfig
from llm_model.feedforward import FeedForward, activate

__all__ = ["MoE"]

# dtypes torch._grouped_mm accepts on the host (CPU, meta); CUDA's sync-free kernel is bf16 only
_HOST_GROUPED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


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
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        # tokens per expert as a device tensor: bincount would size its output from the data
        flat = experts.flatten()
        counts = torch.zeros(self.config.n_experts, dtype=torch.long, device=x.device)
        counts = counts.scatter_add_(0, flat, torch.ones_like(flat))  # (E,)
        self._aux_losses(logits, probs, counts)
        dtype = self._grouped_mm_dtype(x)
        if dtype is not None:
            y = self._grouped(x, experts, weights, counts, dtype)
        else:
            y = self._dense(x, experts, weights)
        if self.shared is not None:
            y = y + self.shared(x)
        return y.view(shape)

    def _grouped_mm_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """The dtype the experts compute in if torch._grouped_mm runs it without a host sync.

        Decided from the device, the dtype (the autocast dtype under autocast, which does not
        cover _grouped_mm, so the cast is done here) and the widths (rows must be 16-byte
        aligned); all are static, so under torch.compile this is folded, not a graph break.
        """
        device = x.device.type
        dtype = x.dtype
        if device in ("cuda", "cpu") and torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
        if not hasattr(torch, "_grouped_mm"):  # torch < 2.8
            return None
        if device == "cuda" and torch.cuda.is_available():
            sm = torch.cuda.get_device_properties(x.device).major
            ok = torch.version.hip is None and sm in (9, 10) and dtype == torch.bfloat16
        else:  # CPU; meta, or fake CUDA tensors without a GPU (dry runs): shapes only
            ok = device in ("cpu", "meta", "cuda") and dtype in _HOST_GROUPED_DTYPES
        widths = (self.config.d_model, self.config.expert_hidden_dim)
        return dtype if ok and all(w * dtype.itemsize % 16 == 0 for w in widths) else None

    def _grouped(self, x, experts, weights, counts, dtype) -> torch.Tensor:
        """Sort the N*k (token, expert) pairs by expert; three grouped GEMMs; combine per token."""
        N, k = experts.shape
        order = experts.flatten().argsort(stable=True)  # (N*k,) pair indices in expert order
        offs = counts.cumsum(0).to(torch.int32)  # (E,) end row of each expert's slice
        xs = x.to(dtype)[order // k]  # (N*k, d) tokens gathered in expert order

        def mm(a, w):  # a: (N*k, in) @ w[e].T per slice; w is (E, out, in) like nn.Linear
            return torch._grouped_mm(a, w.to(dtype).transpose(-2, -1), offs=offs)

        up = mm(xs, self.w3) if self.w3 is not None else None
        hidden = activate(self.config.activation, mm(xs, self.w1), up, False)  # (N*k, h)
        out = mm(hidden, self.w2)  # (N*k, d), expert order
        out = out.new_empty(out.shape).index_copy(0, order, out)  # (N*k, d), (token, slot) order
        return (out.view(N, k, -1).to(x.dtype) * weights.unsqueeze(-1)).sum(1)  # (N, d)

    def _dense(self, x, experts, weights) -> torch.Tensor:
        """Every expert on every token; an (N, E) gate matrix zero off the top-k selects."""
        N, (E, h, d) = x.shape[0], self.w1.shape
        gates = x.new_zeros(N, E).scatter(1, experts, weights)  # (N, E)
        gate = (x @ self.w1.reshape(E * h, d).t()).view(N, E, h)  # all experts in one GEMM
        up = (x @ self.w3.reshape(E * h, d).t()).view(N, E, h) if self.w3 is not None else None
        hidden = activate(self.config.activation, gate, up, False) * gates.unsqueeze(-1)
        return torch.einsum("neh,edh->nd", hidden, self.w2)  # sums experts and hidden at once

    def _aux_losses(self, logits, probs, counts) -> None:
        E = self.config.n_experts
        # Switch Transformer: E * sum_e (fraction of routed slots to e) * (mean prob of e)
        frac = counts.to(probs.dtype) / (probs.shape[0] * self.config.moe_top_k)
        self.lb_loss = E * (frac * probs.mean(0)).sum()
        self.router_z_loss = torch.logsumexp(logits, -1).pow(2).mean()  # ST-MoE
        c = self.config
        self.aux_loss = c.moe_aux_coef * self.lb_loss + c.moe_router_z_coef * self.router_z_loss
