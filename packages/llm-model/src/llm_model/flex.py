"""FlexAttention path for document masks of packed sequences and sliding windows.

Which attention path runs when (``Transformer`` decides once per forward pass):

- flex (this module): on CUDA when document masking (``doc_ids`` or ``doc_mask_eos_id``)
  or a sliding window is active, with no KV cache, no padding key mask, no ALiBi (its
  score_mod is not wired here) and no attention dropout in training (flex has none). The
  mask is a ``BlockMask``, so fully masked tiles are skipped: packed documents cost about
  sum(len_i^2) instead of T^2, and no (B, 1, T, T) tensor reaches the kernel.
- dense boolean mask through SDPA: every other masked case, i.e. CPU (torch's eager flex on
  CPU has no backward and materialises the scores anyway, several times slower than SDPA),
  generation with a KV cache, padding masks, ALiBi and attention dropout.
- SDPA ``is_causal`` or flash-attn: plain causal attention (flash-attn also does windows).
"""

from __future__ import annotations

import torch

try:
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # pragma: no cover - older torch
    BlockMask = create_block_mask = flex_attention = None

__all__ = ["attend", "block_mask", "supported"]

_compiled_flex = None  # torch.compile(flex_attention), built on first CUDA use


def supported(device: torch.device | str) -> bool:
    """Whether the model should take the flex path for tensors on ``device`` (CUDA only)."""
    return flex_attention is not None and torch.device(device).type == "cuda"


def block_mask(
    doc_ids: torch.Tensor | None, sliding_window: int, seq_len: int, device
) -> BlockMask:
    """BlockMask for causal attention within documents and within a window.

    Args:
        doc_ids: (B, T) document index of each token, or None (one document).
        sliding_window: Attend to at most this many most recent tokens (0 = unlimited).
        seq_len: T, the number of queries and keys.
        device: Where the mask lives (that of the queries).
    """

    def mask_mod(b, h, q_idx, kv_idx):
        keep = kv_idx <= q_idx
        if sliding_window:
            keep = keep & (q_idx - kv_idx < sliding_window)
        if doc_ids is not None:
            keep = keep & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])
        return keep

    batch = doc_ids.shape[0] if doc_ids is not None else None  # None broadcasts
    return create_block_mask(mask_mod, batch, None, seq_len, seq_len, device=device)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockMask, enable_gqa: bool
) -> torch.Tensor:
    """flex_attention on (B, H, T, D) queries and (B, Hkv, T, D) keys/values.

    On CUDA it runs compiled (eager flex materialises the scores); elsewhere eagerly, which
    torch supports for the forward pass only.
    """
    fn = flex_attention
    if q.is_cuda:
        global _compiled_flex
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        fn = _compiled_flex
    return fn(q, k, v, block_mask=mask, enable_gqa=enable_gqa)
