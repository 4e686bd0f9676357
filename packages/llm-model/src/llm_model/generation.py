"""Batched autoregressive generation with a KV cache: greedy, temperature, top-k, top-p.

Prompts of different lengths are left-padded; padding tokens are masked out as keys and
positions count from each prompt's first real token, so a padded prompt generates exactly
what it would alone.
"""

from __future__ import annotations

import torch

from llm_model.attention import KVCache

__all__ = ["generate", "sample_next"]


def sample_next(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of (B, V) logits.

    Args:
        logits: (B, V) float logits.
        temperature: 0 = greedy (argmax); otherwise logits are divided by it.
        top_k: Keep only the k most likely tokens (0 = all).
        top_p: Keep the smallest set of tokens whose probability reaches top_p (nucleus).
        generator: Random generator for reproducible sampling.

    Returns:
        (B,) token ids.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens before it already reach top_p (the first always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(len(prompts), T, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        if p:
            ids[i, T - len(p) :] = torch.tensor(p, device=device)
            valid[i, T - len(p) :] = True
    return ids, valid


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Continue each prompt by up to max_new_tokens tokens.

    Args:
        model: A Transformer.
        prompts: Token ids per prompt (at least one token each).
        max_new_tokens: Tokens to generate per prompt.
        temperature: 0 = greedy; see ``sample_next`` for top_k / top_p.
        eos_id: Stop a row after it emits this id (the id is kept in its output).
        pad_id: Id used for left padding (never attended to).
        use_cache: Keep keys/values (KV cache); False recomputes the whole prefix each step.
        generator: Random generator for sampling.

    Returns:
        The generated ids per prompt (without the prompt).
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    device = next(model.parameters()).device
    ids, valid = _left_pad(prompts, pad_id, device)
    B, T = ids.shape
    cache = None
    if use_cache:
        dtype = next(model.parameters()).dtype
        cache = KVCache(model.config, B, T + max_new_tokens, device, dtype)
    out = torch.empty(B, 0, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    step_ids, step_valid = ids, valid
    for _ in range(max_new_tokens):
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        kv_mask = valid
        if cache is not None:
            positions = positions[:, -step_ids.shape[1] :]
            kv_mask = step_valid
        h = model.hidden_states(step_ids, positions=positions, key_mask=kv_mask, cache=cache)
        nxt = sample_next(model.logits(h[:, -1]), temperature, top_k, top_p, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out = torch.cat([out, nxt[:, None]], dim=1)
        if eos_id is not None:
            done = done | (nxt == eos_id)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        valid = torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)
        if done.all():
            break
        step_ids = nxt[:, None] if cache is not None else ids
        step_valid = valid[:, -1:] if cache is not None else valid
    return [_trim(row, eos_id) for row in out.tolist()]


def _trim(row: list[int], eos_id: int | None) -> list[int]:
    if eos_id is not None and eos_id in row:
        return row[: row.index(eos_id) + 1]
    return row
