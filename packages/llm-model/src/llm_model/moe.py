"""Mixture-of-experts FFN: top-k router, load-balancing and router z-losses, dropless dispatch.

Dispatch never reads a routing decision on the host: no ``.tolist()``/``.item()``, no shape
that depends on the data, no Python branch on a tensor. So the layer is one graph under
``torch.compile`` and nothing in it blocks CUDA-graph capture. Every routed token is computed
(dropless, as in MegaBlocks). The routed experts run in one of two ways, chosen per call from
the device and the dtype (``_grouped_mm_dtype``), with the same outputs and gradients:

- **Grouped GEMM** (``torch._grouped_mm``): the N*k (token, expert) pairs are sorted by
  expert and each expert multiplies its contiguous slice, in one call whose slice ends are
  ``offs = cumsum(counts)``, a device tensor. FLOPs and memory are those of the N*k routed
  pairs. Runs on CUDA sm90/sm100 in bf16 (CUTLASS kernel), on CPU in fp32/bf16/fp16 (ATen
  loops over the groups in C++, over host memory: nothing to sync) and on meta (shapes only,
  so meta-device FLOP/memory checks see the routed cost, not the fallback's). Elsewhere (other
  GPUs, fp32 on CUDA) ATen falls back to copying ``offs`` to the host: a sync, so not used.
- **Tiled fallback** (everything else: fp64, an A100, fp32 on CUDA, odd widths): each
  expert's sorted slice is padded to whole tiles of B = ceil(N*k/E) rows (the mean load), and
  one ``bmm`` multiplies every tile by its expert's weights (gathered per tile). T =
  ceil(N*k/B) + E tiles hold any routing, so shapes are static. Cost: at most 2x the routed
  FLOPs and activations (T*B = (ceil(N*k/B) + E)*B, about 2*N*k rows), plus per-tile weight
  copies, T*in*out per matrix, about 2x the layer's expert weights, transient
  (``_TileMatmul`` gathers them again in backward rather than keeping them).
  Rejected: a padded (E, capacity, d) buffer. It is dropless only with capacity N per expert
  (a token's top-k experts are distinct, so one expert can get every token): the cost of
  running every expert on every token, E/k times the routed FLOPs and activations (4x for
  moe-small, 8x for OLMoE), against at most 2x here; at 2048 tokens on CPU it saved 1.8-2.3x
  the bytes of the tiled path and took 1.9-2.3x its time (``benchmarks/moe``), a gap that
  grows with E/k. B near the mean load roughly minimises padding + weight copies.
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
        k = self.config.moe_top_k
        order = flat.argsort(stable=True)  # (N*k,) pair indices in expert order
        out = self._routed(x[order // k], flat[order], counts)  # (N*k, d), expert order
        out = out.new_empty(out.shape).index_copy(0, order, out)  # (N*k, d), (token, slot) order
        y = (out.view(-1, k, out.shape[-1]).to(x.dtype) * weights.unsqueeze(-1)).sum(1)  # (N, d)
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

    def _routed(self, xs, experts, counts) -> torch.Tensor:
        """Each pair's expert FFN on ``xs`` (N*k, d), sorted by expert (``experts``, ``counts``)."""
        dtype = self._grouped_mm_dtype(xs)
        if dtype is not None:
            offs = counts.cumsum(0).to(torch.int32)  # (E,) end row of each expert's slice

            def grouped(a, w):  # a (N*k, in): each expert's slice @ w[e].T; w (E, out, in)
                return torch._grouped_mm(a, w.to(dtype).transpose(-2, -1), offs=offs)

            return self._ffn(xs.to(dtype), grouped)
        row, tile_expert, B = _tiles(experts, counts)

        def tiled(a, w):  # a (T*B, in) as T tiles of B rows, each tile @ its expert's w.T
            tiles = a.view(-1, B, a.shape[-1])  # (T, B, in)
            return _TileMatmul.apply(tiles, w, tile_expert).flatten(0, 1)

        padded = xs.new_zeros(tile_expert.shape[0] * B, xs.shape[-1]).index_copy(0, row, xs)
        return self._ffn(padded, tiled)[row]  # padding rows are zeros and dropped here

    def _ffn(self, xs: torch.Tensor, mm) -> torch.Tensor:
        """w2(act(w1 x) [* w3 x]) per expert, the matmuls done by ``mm(input, weight)``."""
        up = mm(xs, self.w3) if self.w3 is not None else None
        return mm(activate(self.config.activation, mm(xs, self.w1), up, False), self.w2)

    def _aux_losses(self, logits, probs, counts) -> None:
        E = self.config.n_experts
        # Switch Transformer: E * sum_e (fraction of routed slots to e) * (mean prob of e)
        frac = counts.to(probs.dtype) / (probs.shape[0] * self.config.moe_top_k)
        self.lb_loss = E * (frac * probs.mean(0)).sum()
        self.router_z_loss = torch.logsumexp(logits, -1).pow(2).mean()  # ST-MoE
        c = self.config
        self.aux_loss = c.moe_aux_coef * self.lb_loss + c.moe_router_z_coef * self.router_z_loss


def _tiles(experts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Tile the n expert-sorted pairs with static shapes: each expert's slice padded to whole
    tiles of B rows, B = ceil(n / E) (the mean load). T = ceil(n / B) + E tiles bound
    sum_e ceil(counts_e / B) for any routing, so no shape depends on the data.

    Returns each pair's row in the padded (T*B, d) buffer, each tile's expert (the spare tiles
    get the last expert and only zero rows), and B.
    """
    n, E = experts.shape[0], counts.shape[0]
    B = -(-n // E)
    T = -(-n // B) + E
    tiles = (counts + B - 1) // B  # (E,) tiles of each expert
    tile_end = tiles.cumsum(0)  # (E,)
    start = counts.cumsum(0) - counts  # (E,) first sorted pair of each expert
    rank = torch.arange(n, device=experts.device) - start[experts]  # (n,) place in its slice
    row = (tile_end - tiles)[experts] * B + rank  # (n,)
    tile = torch.arange(T, device=experts.device)
    tile_expert = torch.searchsorted(tile_end, tile, right=True).clamp_(max=E - 1)  # (T,)
    return row, tile_expert, B


class _TileMatmul(torch.autograd.Function):
    """(T, B, in) tiles @ w[tile_expert].T -> (T, B, out); w (E, out, in).

    Backward gathers the tiles' weights again instead of keeping the T gathered copies (up to
    twice the layer's expert weights) alive from forward to backward, as a plain bmm would.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, tiles, w, tile_expert):
        ctx.save_for_backward(tiles, w, tile_expert)
        return torch.bmm(tiles, w[tile_expert].transpose(-2, -1))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        tiles, w, tile_expert = ctx.saved_tensors
        grad_tiles = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_tiles = torch.bmm(grad, w[tile_expert].to(grad.dtype))  # (T, B, in)
        if ctx.needs_input_grad[1]:
            per_tile = torch.bmm(grad.transpose(1, 2), tiles.to(grad.dtype))  # (T, out, in)
            grad_w = torch.zeros_like(w).index_add_(0, tile_expert, per_tile.to(w.dtype))
        return grad_tiles, grad_w, None
