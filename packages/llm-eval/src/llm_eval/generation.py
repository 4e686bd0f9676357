"""The generation engine: batched greedy or sampled decoding with a KV cache, stop strings.

Prompts are sorted by length and batched; each batch is left-padded and prefilled in one
forward pass, then decoded one token per step for every live row. A row finishes at EOS, at its
own ``max_tokens`` or when one of its stop strings appears in its decoded text (matched on text,
so a stop string split over several tokens is found); finished rows leave the batch (their KV
cache rows are dropped) and the others keep going. The model is reached through a `Decoder`:

- a module with ``new_kv_cache(batch, max_len)`` and ``hidden_states(ids, positions=,
  key_mask=, cache=)`` + ``logits(h)`` (llm_model.Transformer) decodes with its own
  preallocated cache (`KVCacheDecoder`);
- a module with ``generation_decoder()`` returns its own (`llm_eval.hf` for transformers
  models: their ``past_key_values``);
- any other ``model(input_ids) -> logits`` is run on the whole sequence of each row at every
  step (`RecomputeDecoder`: no cache, no padding; slow, but any model works).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from llm_eval.protocols import TokenizerLike, eval_mode, model_device

__all__ = ["Generation", "Sampling", "decoder_for", "generate", "generate_until"]


@dataclass(kw_only=True, frozen=True)
class Sampling:
    """How the next token is picked: greedy (temperature 0) or sampled.

    Attributes:
        temperature: 0 = argmax; otherwise logits are divided by it before sampling.
        top_k: Keep the k most likely tokens (0 = all).
        top_p: Keep the smallest set of tokens whose probability reaches top_p (nucleus).
        seed: Seed of the sampling generator (samples depend on it and on the batching).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature: got {self.temperature}; must be >= 0")
        if self.top_k < 0:
            raise ValueError(f"Sampling.top_k: got {self.top_k}; must be >= 0 (0 = all)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p: got {self.top_p}; must be in (0, 1]")

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, V) logits -> (B,) token ids."""
        if self.temperature == 0:
            return logits.argmax(-1)
        logits = logits.float() / self.temperature
        if self.top_k:
            kth = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1:
            sorted_logits, order = logits.sort(-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs >= self.top_p  # the first token always stays
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@dataclass
class Generation:
    """One generated continuation: ``text`` (cut before the first stop string), its token ids
    (EOS and anything after the stop string's token included: what the model emitted) and why
    it ended."""

    text: str
    tokens: list[int]
    finish: Literal["stop", "eos", "length"]


class Decoder(Protocol):
    """What the engine drives. ``step`` gets (B, T) ids, their positions and validity (False
    for left padding) and returns (B, V) float logits at the last position; the cache holds
    every earlier token of each row."""

    def new_cache(self, batch: int, max_len: int) -> Any: ...

    def step(
        self, ids: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, cache
    ) -> Any: ...

    def keep_rows(self, cache, rows: torch.Tensor) -> Any: ...


class KVCacheDecoder:
    """A module with ``new_kv_cache``, ``hidden_states(..., key_mask=, cache=)``, ``logits``.

    ``compile=True`` wraps the step in ``torch.compile`` (for GPUs; dynamic shapes, since the
    batch shrinks and the cache grows).
    """

    def __init__(self, model: nn.Module, compile: bool = False) -> None:
        self.model = model
        self._forward = torch.compile(self._last_logits, dynamic=True) if compile else None

    def new_cache(self, batch: int, max_len: int):
        return self.model.new_kv_cache(batch, max_len)

    def _last_logits(self, ids, positions, valid, cache) -> torch.Tensor:
        h = self.model.hidden_states(ids, positions=positions, key_mask=valid, cache=cache)
        return self.model.logits(h[:, -1])

    def step(self, ids, positions, valid, cache) -> torch.Tensor:
        return (self._forward or self._last_logits)(ids, positions, valid, cache)

    def keep_rows(self, cache, rows: torch.Tensor):
        cache.select(rows)
        return cache


class RecomputeDecoder:
    """Any ``model(input_ids) -> logits``: each row's whole sequence (padding dropped) runs at
    every step, one row at a time. The cache is the token lists."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def new_cache(self, batch: int, max_len: int) -> list[list[int]]:
        return [[] for _ in range(batch)]

    def step(self, ids, positions, valid, cache) -> torch.Tensor:
        for row, (tokens, ok) in enumerate(zip(ids.tolist(), valid.tolist(), strict=True)):
            cache[row].extend(t for t, keep in zip(tokens, ok, strict=True) if keep)
        out = []
        for tokens in cache:
            x = torch.tensor([tokens], device=ids.device)
            logits = self.model(x)
            out.append(getattr(logits, "logits", logits)[0, -1].float())
        return torch.stack(out)

    def keep_rows(self, cache, rows: torch.Tensor) -> list[list[int]]:
        return [cache[i] for i in rows.tolist()]


def decoder_for(model: nn.Module, compile: bool = False) -> Decoder:
    """The fastest `Decoder` the model supports (see the module docstring)."""
    if hasattr(model, "generation_decoder"):
        return model.generation_decoder()
    if all(hasattr(model, name) for name in ("new_kv_cache", "hidden_states", "logits")):
        return KVCacheDecoder(model, compile=compile)
    return RecomputeDecoder(model)


class _Row:
    """One request's progress: its generated ids and when it is done."""

    def __init__(self, stop: Sequence[str], max_tokens: int, window: int) -> None:
        self.stop, self.max_tokens, self.window = tuple(stop), max_tokens, window
        self.tokens: list[int] = []
        self.finish: str | None = None

    def add(self, token: int, tokenizer: TokenizerLike) -> bool:
        """Append ``token``; True when the row is finished."""
        self.tokens.append(token)
        if token == tokenizer.eos_id:
            self.finish = "eos"
        elif self.stop and _has_stop(tokenizer.decode(self.tokens[-self.window :]), self.stop):
            self.finish = "stop"
        elif len(self.tokens) >= self.max_tokens:
            self.finish = "length"
        return self.finish is not None

    def result(self, tokenizer: TokenizerLike) -> Generation:
        ids = self.tokens[:-1] if self.finish == "eos" else self.tokens
        return Generation(cut_at_stop(tokenizer.decode(ids), self.stop), self.tokens, self.finish)


def _has_stop(text: str, stop: Sequence[str]) -> bool:
    return any(s in text for s in stop)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string (lm-eval's split on each)."""
    for s in stop:
        text = text.split(s, 1)[0]
    return text


def _stop_window(stop: Sequence[str]) -> int:
    """Tokens to decode when looking for a new stop string: a match that ends in the newest
    token spans at most one token per UTF-8 byte of the string (every token has >= 1 byte);
    one more in front, so the match never starts the decoded window (a window's first token
    may begin inside a character, or lose its leading space in a SentencePiece decode). The
    returned text is cut on the decode of the whole generation either way."""
    return max((len(s.encode("utf-8")) for s in stop), default=0) + 1


def _left_pad(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids (0 in padding) and validity of left-padded prompts."""
    T = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), T, dtype=torch.long)
    valid = torch.zeros(len(prompts), T, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, T - len(p) :] = torch.tensor(p, dtype=torch.long)
        valid[i, T - len(p) :] = True
    return ids.to(device), valid.to(device)


def _decode_batch(decoder, tokenizer, prompts, rows: list[_Row], sampling, generator, device):
    """Decode one batch until every row is finished; fills ``rows`` in place."""
    ids, valid = _left_pad(prompts, device)
    cache = decoder.new_cache(len(rows), ids.shape[1] + max(r.max_tokens for r in rows))
    positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
    logits = decoder.step(ids, positions, valid, cache)
    live = list(range(len(rows)))  # batch row -> index in rows
    next_pos = valid.sum(-1)  # (B,) position of the next token
    while True:
        tokens = sampling.pick(logits, generator)
        finished = [rows[i].add(t, tokenizer) for i, t in zip(live, tokens.tolist(), strict=True)]
        if all(finished):
            return
        if any(finished):  # finished rows leave the batch (and the cache)
            keep = [j for j, done in enumerate(finished) if not done]
            keep_t = torch.tensor(keep, device=device)
            cache = decoder.keep_rows(cache, keep_t)
            live, tokens, next_pos = [live[j] for j in keep], tokens[keep_t], next_pos[keep_t]
        step_ids, step_pos = tokens[:, None], next_pos[:, None]
        logits = decoder.step(
            step_ids, step_pos, torch.ones_like(step_ids, dtype=torch.bool), cache
        )
        next_pos = next_pos + 1


def generate(
    model: nn.Module,
    tokenizer: TokenizerLike,
    prompts: Sequence[Sequence[int]],
    *,
    stop: Sequence[str] | Sequence[Sequence[str]] | None = None,
    max_tokens: int | Sequence[int],
    max_seq_len: int,
    batch_size: int = 16,
    sampling: Sampling | None = None,
    device: torch.device | str | None = None,
    compile: bool = False,
    progress: bool = False,
    inference: bool = True,
) -> list[Generation]:
    """Continue each prompt (token ids) until EOS, a stop string or its ``max_tokens``.

    Args:
        model: See the module docstring for what makes it fast.
        tokenizer: `TokenizerLike` (decodes for the stop strings; ``eos_id`` ends a row).
        prompts: Token ids per prompt, each at least one token; a prompt longer than
            ``max_seq_len - max_tokens`` keeps its last tokens (as lm-eval truncates).
        stop: Stop strings for every prompt (a list of str) or one list per prompt.
        max_tokens: Most new tokens (>= 1), for every prompt or per prompt.
        max_seq_len: Longest sequence the model takes (prompt + generated).
        batch_size: Prompts decoded together (sorted by length, longest first).
        sampling: Greedy by default.
        device: Default: the model's.
        compile: ``torch.compile`` the step (GPU runs; untested on CPU).
        progress: A progress bar over prompts.
        inference: Run under ``torch.inference_mode`` (standalone); False: ``no_grad``, for a
            model in the middle of training (see `eval_mode`).

    Returns:
        One `Generation` per prompt, in prompt order.
    """
    sampling = sampling or Sampling()
    stop, max_tokens = _per_prompt(stop, max_tokens, len(prompts))
    prompts = [
        _fit(list(p), n, max_seq_len, i)
        for i, (p, n) in enumerate(zip(prompts, max_tokens, strict=True))
    ]
    device = torch.device(device) if device is not None else model_device(model)
    generator = None
    if sampling.temperature > 0:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    decoder = decoder_for(model, compile=compile)
    rows = [_Row(s, n, _stop_window(s)) for s, n in zip(stop, max_tokens, strict=True)]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress)
    with eval_mode(model, inference=inference):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            sub = [rows[i] for i in batch]
            _decode_batch(decoder, tokenizer, [prompts[i] for i in batch], sub, sampling,
                          generator, device)  # fmt: skip
            bar.update(len(batch))
    bar.close()
    return [row.result(tokenizer) for row in rows]


def _per_prompt(stop, max_tokens, n: int) -> tuple[list[tuple[str, ...]], list[int]]:
    """Stop strings and max tokens, one of each per prompt."""
    if not stop:
        stop = [()] * n
    elif all(isinstance(s, str) for s in stop):
        stop = [tuple(stop)] * n
    stop = [(s,) if isinstance(s, str) else tuple(s) for s in stop]
    max_tokens = [max_tokens] * n if isinstance(max_tokens, int) else list(max_tokens)
    if not n == len(stop) == len(max_tokens):
        raise ValueError(
            f"generate: {n} prompts, {len(stop)} stop lists, {len(max_tokens)} max_tokens; "
            "need one of each per prompt (or one for all)"
        )
    return stop, max_tokens


def _fit(prompt: list[int], max_tokens: int, max_seq_len: int, index: int) -> list[int]:
    if max_tokens < 1:
        raise ValueError(f"generate: prompt {index}: max_tokens={max_tokens}; must be >= 1")
    if max_tokens >= max_seq_len:
        raise ValueError(
            f"generate: prompt {index}: max_tokens={max_tokens} leaves no room for the prompt "
            f"in max_seq_len={max_seq_len}"
        )
    if not prompt:
        raise ValueError(f"generate: prompt {index} has no tokens")
    return prompt[-(max_seq_len - max_tokens) :]


def generate_until(
    model,
    prompts: Sequence[str],
    stop: Sequence[str] | Sequence[Sequence[str]],
    max_tokens: int | Sequence[int],
    **options,
) -> list[str]:
    """Greedy (or sampled) continuations of text prompts, each cut before its first stop string.

    Args:
        model: An `llm_eval.adapters.LoadedModel` (model, tokenizer, max_seq_len): ours
            (``pretrain.stages:eval_model``) or ``hf:`` (`llm_eval.hf.load_hf`).
        prompts: Prompt texts; each is encoded after an EOS (the document start our models
            were trained on, as in scoring).
        stop: Stop strings for every prompt (a list of str), or one list per prompt.
        max_tokens: Most new tokens, for every prompt or per prompt.
        **options: Passed to `generate` (``batch_size``, ``sampling``, ``device``, ...).

    Returns:
        The generated text per prompt, in order.
    """
    tok = model.tokenizer
    ids = [[tok.eos_id, *p] for p in tok.encode_batch(list(prompts))] if prompts else []
    out = generate(
        model.model, tok, ids, stop=stop, max_tokens=max_tokens,
        max_seq_len=model.max_seq_len, **options,
    )  # fmt: skip
    return [g.text for g in out]
