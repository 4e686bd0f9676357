"""Causal self-attention: MHA / GQA / MQA, QK-norm, RoPE, ALiBi, masks and a KV cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from llm_model import _kernels, flex
from llm_model.config import ModelConfig
from llm_model.norm import build_norm
from llm_model.position import apply_rope

try:  # the optional [flash] extra
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the environment
    flash_attn_func = None

__all__ = ["Attention", "AttentionInputs", "KVCache"]


@dataclass
class AttentionInputs:
    """What every attention layer of one forward pass shares.

    Attributes:
        cos: RoPE cosines, (T, rot/2) or (B, T, rot/2), or None without RoPE.
        sin: RoPE sines, same shape as cos.
        mask: Boolean (B|1, 1, Tq, Tk), True where a query may attend to a key; None means
            plain causal attention over Tq == Tk tokens (SDPA's is_causal fast path).
        bias: Additive float (B|1, H, Tq, Tk) bias (ALiBi), or None.
        cache: KV cache for generation, or None.
        block_mask: FlexAttention BlockMask (causal + documents + window); when set it
            replaces ``mask`` and attention goes through ``llm_model.flex`` (see there for
            which path runs when).
        documents: Document masking is active (flash-attn cannot do it).
    """

    cos: torch.Tensor | None = None
    sin: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    cache: KVCache | None = None
    block_mask: flex.BlockMask | None = None
    documents: bool = False
    _additive: dict[torch.dtype, torch.Tensor] = field(default_factory=dict, repr=False)

    def sdpa_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """``mask`` as SDPA gets it: on a CPU as 0 / -inf in ``dtype``, made once per forward
        pass for all layers (CPU SDPA runs about a third faster on an additive mask than on a
        boolean one; same output: every row keeps at least its diagonal), elsewhere boolean."""
        if self.mask.device.type != "cpu":
            return self.mask
        if dtype not in self._additive:
            zeros = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device)
            self._additive[dtype] = zeros.masked_fill_(~self.mask, float("-inf"))
        return self._additive[dtype]


@dataclass
class QuerySlots:
    """Kept query positions laid out per row: ``slots`` (B, Q) positions (padding: position 0,
    which always sees itself), and for each kept pair its ``line`` and ``slot`` in that layout."""

    line: torch.Tensor  # (N,)
    slot: torch.Tensor  # (N,)
    slots: torch.Tensor  # (B, Q)
    rows: torch.Tensor  # (B, 1): arange, for indexing

    @classmethod
    def of(cls, keep: torch.Tensor, B: int) -> QuerySlots:
        line, device = keep[:, 0], keep.device
        counts = torch.bincount(line, minlength=B)
        order = torch.argsort(line, stable=True)
        first = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(line)
        slot[order] = torch.arange(len(line), device=device) - first[line[order]]
        slots = torch.zeros(B, int(counts.max()), dtype=torch.long, device=device)
        slots[line, slot] = keep[:, 1]
        return cls(line, slot, slots, torch.arange(B, device=device)[:, None])

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """(T, r) or (B, T, r) per-position values -> (B, Q, r) at the slots."""
        return t[self.slots] if t.dim() == 2 else t[self.rows, self.slots]

    def mask_rows(self, inputs: AttentionInputs, dtype: torch.dtype, Tk: int) -> torch.Tensor:
        """(B, 1, Q, Tk): the kept queries' rows of the mask (plain causal when there is none)."""
        if inputs.mask is None:
            keys = torch.arange(Tk, device=self.slots.device)
            return (keys <= self.slots[:, :, None]).unsqueeze(1)
        mask = inputs.sdpa_mask(dtype).expand(len(self.slots), -1, -1, -1)
        return torch.gather(mask, 2, self.slots[:, None, :, None].expand(-1, 1, -1, Tk))


def _queries_at_supported(config: ModelConfig, inputs: AttentionInputs) -> bool:
    """Whether attention can run for a subset of queries (plain or masked SDPA)."""
    plain = inputs.cache is None and inputs.bias is None and inputs.block_mask is None
    return plain and config.attn_backend != "flash"


class KVCache:
    """Keys and values of every layer for batched generation, preallocated to max_len."""

    def __init__(self, config: ModelConfig, batch: int, max_len: int, device, dtype) -> None:
        shape = (batch, config.kv_heads, max_len, config.dim_per_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.positions = torch.zeros(batch, max_len, device=device, dtype=torch.long)
        self.valid = torch.ones(batch, max_len, device=device, dtype=torch.bool)
        self.length = 0  # tokens already stored; advanced by the transformer after each step

    def store_positions(self, positions: torch.Tensor, valid: torch.Tensor | None):
        """Record (B, T) positions and validity of new tokens; return those of all tokens."""
        end = self.length + positions.shape[1]
        self.positions[:, self.length : end] = positions
        self.valid[:, self.length : end] = True if valid is None else valid
        return self.positions[:, :end], self.valid[:, :end]

    def update(self, layer_id: int, k: torch.Tensor, v: torch.Tensor):
        """Store (B, Hkv, T, D) keys/values after the cached ones; return all so far."""
        end = self.length + k.shape[2]
        self.k[layer_id][:, :, self.length : end] = k
        self.v[layer_id][:, :, self.length : end] = v
        return self.k[layer_id][:, :, :end], self.v[layer_id][:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (LongTensor), in that order: finished sequences
        leave the batch so that the others' steps stop paying for them."""
        self.k = [k[rows] for k in self.k]
        self.v = [v[rows] for v in self.v]
        self.positions, self.valid = self.positions[rows], self.valid[rows]


class Attention(nn.Module):
    """Multi-head attention with n_kv_heads key/value heads (MHA, GQA or MQA)."""

    def __init__(self, config: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.config, self.layer_id = config, layer_id
        self.n_heads, self.n_kv_heads = config.n_heads, config.kv_heads
        self.head_dim = config.dim_per_head
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        self.wq = nn.Linear(config.d_model, q_dim, bias=config.bias)
        self.wk = nn.Linear(config.d_model, kv_dim, bias=config.bias)
        self.wv = nn.Linear(config.d_model, kv_dim, bias=config.bias)
        self.wo = nn.Linear(q_dim, config.d_model, bias=config.bias)
        self.q_norm = self.k_norm = None
        if config.qk_norm != "none":
            full = config.qk_norm == "full"
            self.q_norm = build_norm(config, q_dim if full else self.head_dim)
            self.k_norm = build_norm(config, kv_dim if full else self.head_dim)

    def forward(
        self, x: torch.Tensor, inputs: AttentionInputs, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); with ``keep`` ((N, 2) (row, position) pairs) -> (N, d): keys
        and values of every position, queries of the kept ones only (the last block when only
        a few positions are read). Paths that cannot (KV cache, ALiBi, flex, flash) run in
        full and are gathered."""
        if keep is not None and not _queries_at_supported(self.config, inputs):
            return self.forward(x, inputs)[keep[:, 0], keep[:, 1]]
        B, T, _ = x.shape
        at = None if keep is None else QuerySlots.of(keep, B)
        xq = x if at is None else x[at.rows, at.slots]  # (B, Tq, d)
        q, k, v = self._project(xq, x)
        if inputs.cos is not None:
            q, k = self._rope(q, k, inputs.cos, inputs.sin, at)
        if self._use_flash(q, inputs):
            y = flash_attn_func(q, k, v, dropout_p=self._dropout(), causal=True, **self._flash())
        else:
            y = self._sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), inputs, at)
            y = y.transpose(1, 2)  # (B, Tq, H, D)
        y = y.reshape(B, xq.shape[1], -1)
        return self.wo(y if at is None else y[at.line, at.slot])

    def _project(self, xq: torch.Tensor, x: torch.Tensor):
        """q (B, Tq, H, D) from ``xq``; k, v (B, T, Hkv, D) from ``x``; QK-norm applied."""
        (B, Tq, _), T = xq.shape, x.shape[1]
        q, k, v = self.wq(xq), self.wk(x), self.wv(x)
        if self.config.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(B, Tq, self.n_heads, self.head_dim)
        k = k.view(B, T, self.n_kv_heads, self.head_dim)
        v = v.view(B, T, self.n_kv_heads, self.head_dim)
        if self.config.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def _rope(self, q, k, cos, sin, at: QuerySlots | None = None):
        interleaved = self.config.rope_interleaved
        if at is not None:  # queries at some positions: their own angles
            q = apply_rope(q, at.gather(cos), at.gather(sin), interleaved)
            return q, apply_rope(k, cos, sin, interleaved)
        if cos.dim() == 2 and _kernels.available(self.config.kernels, q):
            return _kernels.llm_kernels.apply_rope(q, k, cos, sin, interleaved=interleaved)
        return apply_rope(q, cos, sin, interleaved), apply_rope(k, cos, sin, interleaved)

    def _sdpa(self, q, k, v, inputs: AttentionInputs, at: QuerySlots | None = None):
        """Attention on (B, H, T, D) tensors through SDPA (or flex with a BlockMask)."""
        if inputs.cache is not None:
            k, v = inputs.cache.update(self.layer_id, k, v)
        gqa = self.n_kv_heads != self.n_heads
        if at is not None:  # the kept queries' rows of the mask
            mask = at.mask_rows(inputs, q.dtype, k.shape[2])
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        if inputs.block_mask is not None:  # never with a cache, ALiBi or dropout
            return flex.attend(q, k, v, inputs.block_mask, enable_gqa=gqa)
        if inputs.mask is None and inputs.bias is None:
            return F.scaled_dot_product_attention(
                q, k, v, dropout_p=self._dropout(), is_causal=True, enable_gqa=gqa
            )
        if inputs.bias is not None:  # fold the boolean mask into the additive bias
            mask = inputs.bias.masked_fill(~inputs.mask, float("-inf")).to(q.dtype)
        else:
            mask = inputs.sdpa_mask(q.dtype)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self._dropout(), enable_gqa=gqa
        )

    def _dropout(self) -> float:
        return self.config.dropout if self.training else 0.0

    def _use_flash(self, q: torch.Tensor, inputs: AttentionInputs) -> bool:
        # flash-attn handles causal, sliding-window and ALiBi itself; document masks and the
        # KV cache go through flex or SDPA with an explicit mask.
        if self.config.attn_backend != "flash":
            return False
        if flash_attn_func is None or not q.is_cuda:
            raise RuntimeError("ModelConfig.attn_backend='flash' needs flash-attn and CUDA")
        return inputs.cache is None and not inputs.documents

    def _flash(self) -> dict:
        kwargs = {}
        if self.config.sliding_window:
            kwargs["window_size"] = (self.config.sliding_window - 1, 0)
        if self.config.position == "alibi":
            from llm_model.position import alibi_slopes

            kwargs["alibi_slopes"] = alibi_slopes(self.n_heads).cuda()
        return kwargs

    def reset_parameters(self) -> None:
        for norm in (self.q_norm, self.k_norm):
            if norm is not None:
                norm.reset_parameters()
