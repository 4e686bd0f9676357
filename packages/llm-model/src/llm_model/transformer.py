"""The decoder-only Transformer: embeddings, blocks, final norm, output head and loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm_model import _kernels, counting, flex
from llm_model.attention import AttentionInputs, KVCache
from llm_model.block import TransformerBlock
from llm_model.config import ModelConfig
from llm_model.initialization import init_weights
from llm_model.moe import MoE
from llm_model.norm import build_norm
from llm_model.position import alibi_bias, alibi_slopes, rope_cos_sin

__all__ = ["Transformer", "IGNORE_INDEX"]

IGNORE_INDEX = -100


def _embedding(n: int, d: int) -> nn.Embedding:
    # given an empty weight, nn.Embedding skips its own init (init_weights does it), which
    # on the meta device would go through slow reference kernels
    return nn.Embedding(n, d, _weight=torch.empty(n, d))


class Transformer(nn.Module):
    """Decoder-only transformer that the config fully describes.

    Build on the meta device and call ``init_weights(seed)`` after ``to_empty()`` (and after
    sharding) to materialise a large model without allocating it twice; built on a real device
    after ``torch.manual_seed(seed)`` it holds the same weights. ``blocks`` are the units for
    FSDP and activation checkpointing.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = _embedding(config.vocab_size, config.d_model)
        self.pos_emb = None
        if config.position == "learned":
            self.pos_emb = _embedding(config.max_seq_len, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layers))
        # post-norm blocks already end in a norm
        self.norm = build_norm(config) if config.norm_position != "post" else None
        self.output = None
        if not config.tie_embeddings:
            self.output = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if not self.tok_emb.weight.is_meta:  # on meta: to_empty() then init_weights()
            self.init_weights()

    def init_weights(self, seed: int | None = None) -> None:
        """(Re)initialise all parameters with the scheme ``config.init`` selects, each from a
        generator seeded by (``seed``, its name); under FSDP2 only this rank's shards. None:
        the seed of the last ``torch.manual_seed`` (see ``initialization.init_weights``)."""
        init_weights(self, seed)

    @property
    def output_weight(self) -> torch.Tensor:
        """(V, d) weight of the output projection (the embedding when tied)."""
        return self.tok_emb.weight if self.output is None else self.output.weight

    def new_kv_cache(self, batch: int, max_len: int) -> KVCache:
        """A preallocated KV cache for ``batch`` sequences of up to ``max_len`` tokens, on the
        device and in the dtype of the weights (what llm-eval's generation engine asks for)."""
        weight = self.tok_emb.weight
        return KVCache(self.config, batch, max_len, weight.device, weight.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        doc_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ):
        """Logits, or the loss and its parts.

        Args:
            input_ids: (B, T) token ids.
            labels: (B, T) next-token ids, IGNORE_INDEX (-100) where no loss is wanted.
            doc_ids: (B, T) document index of each token for document masking (overrides
                the split at ``config.doc_mask_eos_id``).
            positions: (B, T) position of each token (default 0..T-1).
            attn_mask: (B, T, T) boolean, True where query t may attend to key s, on top of
                the causal mask (e.g. several continuations packed after one shared context).

        Returns:
            Without labels, float logits (B, T, V). With labels, a dict of scalars: "loss"
            (what to backprop: ce + z_loss + aux_loss) and its detached parts "ce",
            "z_loss" (coefficient * mean logsumexp^2, when config.z_loss > 0), "aux_loss",
            "lb_loss" and "router_z_loss" (MoE only).
        """
        h = self.hidden_states(input_ids, positions=positions, doc_ids=doc_ids, attn_mask=attn_mask)
        if labels is None:
            return self.logits(h)
        return self._loss(h, labels)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        doc_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final (normed) hidden states (B, T, d), or (N, d) at the ``keep`` positions.

        Args:
            input_ids: (B, T) token ids.
            positions: (B, T) positions (default: cache.length + arange(T)).
            key_mask: (B, T) False for padding tokens, which no query attends to.
            cache: KV cache; the new keys/values are appended and cache.length advanced.
            doc_ids: (B, T) document index of each token, for document masking.
            attn_mask: (B, T, T) boolean, True where a query may attend to a key, and-ed with
                the causal mask (no KV cache).
            keep: (N, 2) (row, position) indices of the only outputs wanted (scoring a few
                positions): the last block's attention queries, FFN and norms and the final
                norm run on those alone (keys and values on every position).
        """
        B, T = input_ids.shape
        if attn_mask is not None and cache is not None:
            raise ValueError("hidden_states: attn_mask cannot be combined with a KV cache")
        offset = cache.length if cache is not None else 0
        if positions is None:
            positions = torch.arange(offset, offset + T, device=input_ids.device)
        if doc_ids is None and self.config.doc_mask_eos_id is not None:
            is_eos = (input_ids == self.config.doc_mask_eos_id).long()
            doc_ids = is_eos.cumsum(-1) - is_eos  # a new document starts after each eos
        inputs = self._attention_inputs(positions, key_mask, cache, doc_ids, T, attn_mask)
        h = self.tok_emb(input_ids)
        if self.pos_emb is not None:
            h = h + self.pos_emb(positions)
        h = self.dropout(h)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h, inputs, keep if i == last else None)
        if cache is not None:
            cache.length += T
        return self.norm(h) if self.norm is not None else h

    def _attention_inputs(
        self, positions, key_mask, cache, doc_ids, T, attn_mask=None
    ) -> AttentionInputs:
        c = self.config
        # an explicit mask is a document-style mask for the backends (flash-attn cannot do it)
        masked = doc_ids is not None or attn_mask is not None
        inputs = AttentionInputs(cache=cache, documents=masked)
        if c.position == "rope":
            inputs.cos, inputs.sin = rope_cos_sin(
                positions, c.rotary_dim, c.rope_theta, c.rope_scaling_params
            )
        plain = key_mask is None and cache is None and not masked
        if plain and not c.sliding_window and c.position != "alibi":
            return inputs  # is_causal fast path: SDPA picks flash / cuDNN kernels
        if attn_mask is None and self._use_flex(positions.device, key_mask, cache, doc_ids):
            inputs.block_mask = flex.block_mask(doc_ids, c.sliding_window, T, positions.device)
            return inputs
        B = positions.shape[0] if positions.dim() == 2 else 1
        k_pos, k_valid = positions.expand(B, T), key_mask
        if cache is not None:
            k_pos, k_valid = cache.store_positions(positions.expand(B, T), key_mask)
        inputs.mask = self._dense_mask(
            k_pos.shape[1] - T, T, k_valid, doc_ids, positions.device, attn_mask
        )
        if c.position == "alibi":
            q_pos = positions.expand(B, T)
            inputs.bias = alibi_bias(alibi_slopes(c.n_heads).to(positions.device), q_pos, k_pos)
        return inputs

    def _use_flex(self, device, key_mask, cache, doc_ids) -> bool:
        # see llm_model.flex for which attention path runs when
        c = self.config
        if key_mask is not None or cache is not None or c.position == "alibi":
            return False
        if (self.training and c.dropout > 0) or not flex.supported(device):
            return False
        # flash-attn does sliding windows itself; only documents need flex there
        return doc_ids is not None or (c.sliding_window > 0 and c.attn_backend == "sdpa")

    def _dense_mask(self, offset, T, k_valid, doc_ids, device, attn_mask=None) -> torch.Tensor:
        """Boolean (B|1, 1, T, offset + T) mask: causal, window, padding and documents."""
        q_idx = torch.arange(offset, offset + T, device=device).view(T, 1)
        k_idx = torch.arange(offset + T, device=device).view(1, -1)
        mask = k_idx <= q_idx  # (Tq, Tk) causal on the index in the concatenated sequence
        if self.config.sliding_window:
            mask = mask & (q_idx - k_idx < self.config.sliding_window)
        mask = mask.view(1, 1, T, -1)
        if k_valid is not None:
            mask = mask & k_valid.view(k_valid.shape[0], 1, 1, -1)
        if doc_ids is not None:
            mask = mask & (doc_ids.unsqueeze(-1) == doc_ids.unsqueeze(-2)).unsqueeze(1)
        if attn_mask is not None:
            mask = mask & attn_mask.unsqueeze(1)
        return mask | (k_idx == q_idx)  # a padding query attends to itself: no NaN rows

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Float logits (B, T, V) from final hidden states."""
        return F.linear(h, self.output_weight).float()

    def _loss(self, h: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        h, labels = h.reshape(-1, h.shape[-1]), labels.reshape(-1)
        parts = {}
        if _kernels.available(c.kernels, h):  # fused: logits are never materialised
            loss, z = _kernels.llm_kernels.fused_linear_cross_entropy(
                h, self.output_weight, labels, ignore_index=IGNORE_INDEX, z_loss=c.z_loss
            )
            parts["ce"] = loss.detach() - c.z_loss * z
            if c.z_loss:
                parts["z_loss"] = c.z_loss * z
        else:
            logits = self.logits(h)
            loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
            parts["ce"] = loss.detach()
            if c.z_loss:
                valid = (labels != IGNORE_INDEX).float()
                lse = torch.logsumexp(logits, dim=-1)
                z_term = c.z_loss * (lse.pow(2) * valid).sum() / valid.sum().clamp(min=1)
                loss = loss + z_term
                parts["z_loss"] = z_term.detach()
        moe = [m for m in self.modules() if isinstance(m, MoE)]
        if moe:
            aux = sum(m.aux_loss for m in moe)
            loss = loss + aux
            parts["aux_loss"] = aux.detach()
            parts["lb_loss"] = sum(m.lb_loss for m in moe).detach() / len(moe)
            parts["router_z_loss"] = sum(m.router_z_loss for m in moe).detach() / len(moe)
        return {"loss": loss, **parts}

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (shared ones once).

        Args:
            exclude_embeddings: Leave out the token embedding and learned position table;
                an untied output head is kept (it is a matmul).
        """
        return counting.num_params(self, exclude_embeddings)

    def flops_per_token(self, seq_len: int, exact: bool = False) -> float:
        """Training FLOPs per token (forward + backward); see ``llm_model.counting``.

        exact=False: llm-foundry's 6 * N + 12 * L * d * T, with N = all parameters
        (MoE: active ones). exact=True: ``counting.exact_flops_per_token``.
        """
        if exact:
            return counting.exact_flops_per_token(self, seq_len)
        return counting.foundry_flops_per_token(self, seq_len)
