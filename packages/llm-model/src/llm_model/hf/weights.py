"""Our state-dict tensors under Hugging Face names, as lazy entries the writer streams.

Our RoPE layout (pairs (i, i + D/2)) is Hugging Face's, so q/k weights map without
permutation; Llama and OLMo 2 only rename, GPT-2 also transposes and fuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from llm_model.config import ModelConfig
from llm_model.hf.architectures import arch_spec

__all__ = ["TensorEntry", "hf_entries", "hf_name_map"]


@dataclass(frozen=True)
class TensorEntry:
    """One tensor to write: its Hugging Face name, shape, dtype as stored, and how to load it.

    ``load`` is called once, when the tensor's turn comes; it may return any dtype (the writer
    casts to ``dtype``).
    """

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    load: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n


def hf_name_map(config: ModelConfig, arch: str = "llama") -> dict[str, str]:
    """Our state-dict names -> Hugging Face names of ``arch`` (weights and biases).

    With tied embeddings there is no ``output.weight`` (Hugging Face ties lm_head itself).
    """
    names = {"tok_emb.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not config.tie_embeddings:
        names["output.weight"] = "lm_head.weight"
    parts = {
        "attn.wq": "self_attn.q_proj", "attn.wk": "self_attn.k_proj",
        "attn.wv": "self_attn.v_proj", "attn.wo": "self_attn.o_proj",
        "ffn.w1": "mlp.gate_proj", "ffn.w3": "mlp.up_proj", "ffn.w2": "mlp.down_proj",
        "attn_norm": arch_spec(arch).norms[0], "ffn_norm": arch_spec(arch).norms[1],
        "attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm",
    }  # fmt: skip
    for i in range(config.n_layers):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{kind}"] = f"model.layers.{i}.{theirs}.{kind}"
    return names


def hf_entries(
    config: ModelConfig, arch: str, ours: dict[str, TensorEntry], dtype: torch.dtype | None = None
) -> list[TensorEntry]:
    """Our tensors (by state-dict name, loaded lazily) as ``arch``'s tensors, still lazy.

    Llama and OLMo 2 rename; GPT-2 also transposes (Conv1D) and fuses q, k, v into c_attn.
    Raises one error naming our tensors that have no place in ``arch``.
    """
    if arch == "gpt2":
        out = _gpt2_entries(config, ours)
    else:
        names = hf_name_map(config, arch)
        unmapped = sorted(set(ours) - set(names))
        if unmapped:
            raise ValueError(f"no {arch} name for {unmapped[:5]} ({len(unmapped)} in all)")
        out = [dataclasses.replace(e, name=names[k]) for k, e in ours.items()]
    return [dataclasses.replace(e, dtype=dtype or e.dtype) for e in out]


class _GPT2Layout:
    """Builds GPT-2 entries from ours: renamed, transposed (Conv1D stores (in, out)) or fused."""

    def __init__(self, ours: dict[str, TensorEntry]) -> None:
        self.ours = ours

    def rename(self, src: str, dst: str) -> TensorEntry:
        return dataclasses.replace(self.ours[src], name=dst)

    def transposed(self, src: str, dst: str) -> TensorEntry:
        e = self.ours[src]
        return TensorEntry(dst, e.shape[::-1], e.dtype, lambda: e.load().T)

    def fused(self, srcs: list[str], dst: str) -> TensorEntry:  # q, k, v stacked, then transposed
        parts = [self.ours[k] for k in srcs]
        shape = (sum(e.shape[0] for e in parts), *parts[0].shape[1:])[::-1]
        return TensorEntry(
            dst, shape, parts[0].dtype, lambda: torch.cat([e.load() for e in parts]).T
        )


def _gpt2_entries(config: ModelConfig, ours: dict[str, TensorEntry]) -> list[TensorEntry]:
    """GPT-2's tensors in its file order: embeddings, blocks, final norm, head."""
    g = _GPT2Layout(ours)
    out = [g.rename("tok_emb.weight", "transformer.wte.weight"),
           g.rename("pos_emb.weight", "transformer.wpe.weight")]  # fmt: skip
    for i in range(config.n_layers):
        out += _gpt2_block_entries(g, f"blocks.{i}.", f"transformer.h.{i}.")
    out += [g.rename("norm.weight", "transformer.ln_f.weight"),
            g.rename("norm.bias", "transformer.ln_f.bias")]  # fmt: skip
    if not config.tie_embeddings:
        out.append(g.rename("output.weight", "lm_head.weight"))
    return out


def _gpt2_block_entries(g: _GPT2Layout, b: str, h: str) -> list[TensorEntry]:
    """One block's tensors; ``b`` is our prefix (``blocks.i.``), ``h`` GPT-2's."""
    out = []
    for kind in ("weight", "bias"):
        out.append(g.rename(f"{b}attn_norm.{kind}", f"{h}ln_1.{kind}"))
        out.append(g.rename(f"{b}ffn_norm.{kind}", f"{h}ln_2.{kind}"))
    return out + [
        g.fused([f"{b}attn.w{x}.weight" for x in "qkv"], f"{h}attn.c_attn.weight"),
        g.fused([f"{b}attn.w{x}.bias" for x in "qkv"], f"{h}attn.c_attn.bias"),
        g.transposed(f"{b}attn.wo.weight", f"{h}attn.c_proj.weight"),
        g.rename(f"{b}attn.wo.bias", f"{h}attn.c_proj.bias"),
        g.transposed(f"{b}ffn.w1.weight", f"{h}mlp.c_fc.weight"),
        g.rename(f"{b}ffn.w1.bias", f"{h}mlp.c_fc.bias"),
        g.transposed(f"{b}ffn.w2.weight", f"{h}mlp.c_proj.weight"),
        g.rename(f"{b}ffn.w2.bias", f"{h}mlp.c_proj.bias"),
    ]
