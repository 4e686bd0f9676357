"""Hugging Face ``transformers`` causal LMs behind llm-eval's protocols (the ``[hf]`` extra).

A public model and ours are then scored by the same code. Contexts are shared by their choices
(packed, see `llm_eval.scoring`) through transformers' custom 4-D attention masks and
``position_ids``; models and versions differ in how they read such masks, so `load_hf` checks
on a probe that packed and plain scoring agree and falls back to the plain path (one row per
request) where they do not, saying so.
"""

from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llm_eval.protocols import LoadedModel
from llm_eval.scoring import Request, score_requests

logger = logging.getLogger(__name__)

# nats per request: packed and plain scoring must agree within this on the probe (float32 agrees
# to ~1e-6; a position or mask that is read wrongly shows as 3e-4 and more on a tiny random model)
PROBE_TOLERANCE = {"float32": 1e-4, "float64": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}


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

    def generation_decoder(self) -> HFDecoder:
        """How `llm_eval.generation` decodes this model: with its ``past_key_values``."""
        return HFDecoder(self.model)


@dataclass
class HFCache:
    """transformers' ``DynamicCache`` and the 2-D attention mask of every token so far."""

    past: Any
    mask: torch.Tensor  # (B, max_len) long, 1 for real tokens
    length: int = 0


class HFDecoder:
    """`llm_eval.generation.Decoder` over a transformers causal LM: left padding through the
    2-D ``attention_mask`` and explicit ``position_ids``; finished rows are dropped from the
    cache with ``DynamicCache.batch_select_indices``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        # only the last position's logits (transformers >= 4.50 names it logits_to_keep)
        params = inspect.signature(model.forward).parameters
        self.keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def new_cache(self, batch: int, max_len: int) -> HFCache:
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        return HFCache(DynamicCache(), torch.zeros(batch, max_len, dtype=torch.long, device=device))

    def step(self, ids, positions, valid, cache: HFCache) -> torch.Tensor:
        end = cache.length + ids.shape[1]
        cache.mask[:, cache.length : end] = valid
        out = self.model(
            input_ids=ids, attention_mask=cache.mask[:, :end], position_ids=positions,
            past_key_values=cache.past, use_cache=True, **self.keep,
        )  # fmt: skip
        cache.past, cache.length = out.past_key_values, end
        return out.logits[:, -1].float()

    def keep_rows(self, cache: HFCache, rows: torch.Tensor) -> HFCache:
        cache.past.batch_select_indices(rows)
        cache.mask = cache.mask[rows]
        return cache


class PackedHFCausalLM(HFCausalLM):
    """Also takes ``positions`` (B, T) and a boolean ``attn_mask`` (B, T, T), passed on as
    ``position_ids`` and an additive 4-D mask (causal and-ed in, as llm_model does)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attn_mask is None:
            return super().forward(input_ids)
        T = input_ids.shape[1]
        eye = torch.eye(T, dtype=torch.bool, device=input_ids.device)
        causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
        allowed = (attn_mask & causal) | eye  # a padding query sees itself: no empty row
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=input_ids.device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        out = self.model(
            input_ids=input_ids, attention_mask=mask[:, None], position_ids=positions,
            use_cache=False,
        )  # fmt: skip
        return out.logits


def packing_agrees(model: PackedHFCausalLM, vocab_size: int, max_seq_len: int) -> float:
    """Largest |packed - plain| log-likelihood (nats) over a probe of random requests: two
    contexts with three continuations each, scored both ways."""
    rng = random.Random(0)
    requests = []
    for _ in range(2):
        context = tuple(rng.randrange(vocab_size) for _ in range(min(12, max_seq_len // 2)))
        for n in (1, 3, 5):
            cont = tuple(rng.randrange(vocab_size) for _ in range(min(n, max_seq_len // 2)))
            requests.append(Request(context, cont))
    device = next(model.parameters()).device
    with torch.no_grad():
        kw = dict(batch_size=4, max_seq_len=max_seq_len, device=device)
        packed = score_requests(model, requests, packed=True, **kw)
        plain = score_requests(model, requests, packed=False, **kw)
    return max(abs(a.logprob - b.logprob) for a, b in zip(packed, plain, strict=True))


def _wrap(hf_model: nn.Module, path: str, dtype: str, max_len: int) -> HFCausalLM:
    """`PackedHFCausalLM` when the probe agrees, else `HFCausalLM` (with a warning)."""
    packed = PackedHFCausalLM(hf_model)
    try:
        gap = packing_agrees(packed, hf_model.config.vocab_size, max_len)
    except Exception as err:  # noqa: BLE001 - any failure of the custom mask means: don't pack
        logger.warning(
            "hf:%s: packed scoring failed on the probe (%s); one row per request", path, err
        )
        return HFCausalLM(hf_model)
    if gap <= PROBE_TOLERANCE.get(dtype, 5e-2):
        return packed
    logger.warning(
        "hf:%s: packed and plain scoring differ by %.2e nats on the probe; "
        "scoring one row per request", path, gap,
    )  # fmt: skip
    return HFCausalLM(hf_model)


def load_hf(path: str, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """A local directory (or hub name, where the hub can be reached) as a `LoadedModel`;
    contexts are packed when the probe (`packing_agrees`) allows it."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("llm-eval: HF models need `pip install llm-eval[hf]`") from err
    hf_model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=getattr(torch, dtype))
    hf_model = hf_model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_len = int(getattr(hf_model.config, "max_position_embeddings", None) or 2048)
    model = _wrap(hf_model, path, dtype, max_len)
    packed = isinstance(model, PackedHFCausalLM)
    return LoadedModel(
        model=model,
        tokenizer=HFTokenizer(tokenizer),
        max_seq_len=max_len,
        metadata={
            "model": f"hf:{path}",
            "tokenizer": f"hf:{tokenizer.name_or_path}",
            "packed": packed,
        },
    )
