"""Hugging Face ``transformers`` causal LMs behind llm-eval's protocols (the ``[hf]`` extra).

A public model and ours are then scored by the same code. The wrapper takes the plain path
(``model(input_ids) -> logits``): transformers' custom 4-D masks differ between versions and
models, so contexts are not packed for HF models.
"""

from __future__ import annotations

import torch
from torch import nn

from llm_eval.adapters import LoadedModel


class HFTokenizer:
    """`TokenizerLike` over a ``transformers`` tokenizer: no special tokens added by encode."""

    def __init__(self, tokenizer) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos token")
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.vocab_size = len(tokenizer)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


class HFCausalLM(nn.Module):
    """``model(input_ids) -> logits`` over a ``transformers`` causal LM."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def load_hf(path: str, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """A local directory (or hub name, where the hub can be reached) as a `LoadedModel`."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("llm-eval: HF models need `pip install llm-eval[hf]`") from err
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_len = getattr(model.config, "max_position_embeddings", None) or 2048
    return LoadedModel(
        model=HFCausalLM(model.to(device).eval()),
        tokenizer=HFTokenizer(tokenizer),
        max_seq_len=int(max_len),
        metadata={"model": f"hf:{path}", "tokenizer": f"hf:{tokenizer.name_or_path}"},
    )
