"""Export an in-memory Transformer as a Hugging Face checkpoint (Llama, OLMo 2 or GPT-2)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from llm_model.hf.architectures import pick_architecture, warn_or_refuse_lossy
from llm_model.hf.config import hf_config
from llm_model.hf.weights import TensorEntry, hf_entries
from llm_model.hf.writer import DEFAULT_SHARD_SIZE, parse_size, write_hf_checkpoint
from llm_model.transformer import Transformer

__all__ = ["export_hf"]


def export_hf(
    model: Transformer,
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    shard_size: int | str = DEFAULT_SHARD_SIZE,
    extra_files: dict[str, bytes] | None = None,
    strict: bool = False,
    arch: str = "auto",
) -> Path:
    """Write ``path`` loadable by ``AutoModelForCausalLM.from_pretrained``.

    Args:
        model: A Transformer whose config one of ARCHITECTURES represents (else one error
            naming every field that is not).
        path: Output directory (replaced if it exists; written atomically).
        dtype: Cast weights to this dtype (default: keep).
        bos_token_id, eos_token_id, pad_token_id: Special-token ids for config.json and
            generation_config.json (give them: transformers' defaults are 1 and 2).
        shard_size: Largest safetensors file ("5GB", "500MB" or bytes).
        extra_files: More files for the directory (tokenizer files).
        strict: Refuse instead of warning when the export changes outputs on some inputs
            (``lossy_fields``: document masking).
        arch: "llama", "olmo2", "gpt2" or "auto" (the first that represents the config).
    """
    c = model.config
    arch = pick_architecture(c, arch)
    warn_or_refuse_lossy(c, strict)
    state = model.state_dict()
    ours = {k: TensorEntry(k, tuple(t.shape), t.dtype, lambda t=t: t) for k, t in state.items()}
    entries = hf_entries(c, arch, ours, dtype)
    cfg = hf_config(
        c, arch=arch, dtype=dtype or state["tok_emb.weight"].dtype, bos_token_id=bos_token_id,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id,
    )  # fmt: skip
    return write_hf_checkpoint(
        path, cfg, entries, shard_size=parse_size(shard_size), extra_files=extra_files
    )
