"""Named model configs. ``python -m llm_model.presets`` prints their sizes and FLOPs.

Published sizes these shapes reproduce (tested in tests/test_presets.py):
gpt2-124m = GPT-2 small (124,439,808), gpt2-350m = GPT-2 medium (354,823,168),
gpt2-760m = GPT-3 Large shape (760M), gpt2-1.3b = GPT-3 XL / GPT-Neo 1.3B (1,315,575,808),
llama-1b / llama-3b = Llama 3.2 1B / 3B (1,235,814,400 / 3,212,749,824),
llama-7b / llama-13b = Llama 2 7B / 13B (6,738,415,616 / 13,015,864,320),
mpt-7b = MPT-7B (6,649,286,656), olmo2-1b = OLMo-2 0425 1B (1,484,916,736),
olmoe-1b-7b = OLMoE-1B-7B (6,919,161,856 total, 1.28B active),
llama3-8b / llama3-70b / llama3-405b = Llama 3.1 8B / 70B / 405B (8,030,261,248 /
70,553,706,496 / 405,853,388,800; untied head, the shapes of Meta's model cards).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from llm_model.config import ModelConfig

__all__ = ["PRESETS", "get_preset"]


def _gpt2(d_model: int, n_layers: int, n_heads: int, max_seq_len: int) -> ModelConfig:
    return ModelConfig(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads, vocab_size=50257,
        max_seq_len=max_seq_len, activation="gelu", norm="layernorm", position="learned",
        bias=True, tie_embeddings=True, init="scaled",
    )  # fmt: skip


def _llama(d_model, n_layers, n_heads, n_kv_heads, ffn_hidden, vocab_size, **kw) -> ModelConfig:
    return ModelConfig(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
        ffn_hidden=ffn_hidden, vocab_size=vocab_size, activation="swiglu", norm="rmsnorm",
        position="rope", bias=False, **kw,
    )  # fmt: skip


_LLAMA3 = dict(rope_theta=500000.0, max_seq_len=8192, tie_embeddings=True)
_LLAMA3_BIG = dict(_LLAMA3, tie_embeddings=False)  # 8B and larger: separate output head
_LLAMA2 = dict(rope_theta=10000.0, max_seq_len=4096, tie_embeddings=False)

PRESETS: dict[str, ModelConfig] = {
    "debug": ModelConfig(
        d_model=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=384,
        vocab_size=512,
        max_seq_len=256,
        tie_embeddings=True,
    ),  # fmt: skip
    "gpt2-124m": _gpt2(768, 12, 12, 1024),
    "gpt2-350m": _gpt2(1024, 24, 16, 1024),
    "gpt2-760m": _gpt2(1536, 24, 16, 2048),
    "gpt2-1.3b": _gpt2(2048, 24, 16, 2048),
    "llama-1b": _llama(2048, 16, 32, 8, 8192, 128256, **_LLAMA3),
    "llama-3b": _llama(3072, 28, 24, 8, 8192, 128256, **_LLAMA3),
    "llama3-8b": _llama(4096, 32, 32, 8, 14336, 128256, **_LLAMA3_BIG),
    "llama3-70b": _llama(8192, 80, 64, 8, 28672, 128256, **_LLAMA3_BIG),
    "llama3-405b": _llama(16384, 126, 128, 8, 53248, 128256, **_LLAMA3_BIG),
    "llama-7b": _llama(4096, 32, 32, 32, 11008, 32000, **_LLAMA2),
    "llama-13b": _llama(5120, 40, 40, 40, 13824, 32000, **_LLAMA2),
    "mpt-7b": ModelConfig(
        d_model=4096,
        n_layers=32,
        n_heads=32,
        vocab_size=50432,
        max_seq_len=2048,
        activation="gelu",
        norm="layernorm",
        low_precision_norm=True,
        position="alibi",
        bias=False,
        tie_embeddings=True,
        init="scaled",
    ),  # fmt: skip
    "olmo2-1b": _llama(
        2048,
        16,
        16,
        16,
        8192,
        100352,
        rope_theta=500000.0,
        max_seq_len=4096,
        norm_eps=1e-6,
        qk_norm="full",
        norm_position="sublayer",
        init="normal",
    ),  # fmt: skip
    "moe-small": ModelConfig(
        d_model=256,
        n_layers=4,
        n_heads=4,
        vocab_size=50304,
        max_seq_len=1024,
        n_experts=8,
        moe_top_k=2,
        moe_shared_experts=1,
        moe_ffn_hidden=512,
    ),  # fmt: skip
    "olmoe-1b-7b": _llama(
        2048,
        16,
        16,
        16,
        1024,
        50304,
        max_seq_len=4096,
        norm_eps=1e-5,
        qk_norm="full",
        n_experts=64,
        moe_top_k=8,
    ),  # fmt: skip
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """A copy of preset ``name`` with fields replaced (and validated again).

    Raises:
        ValueError: unknown preset name or field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown} for preset {name!r}")
    return dataclasses.replace(PRESETS[name], **overrides)


def meta_check(config: ModelConfig, seq_len: int = 128):
    """Build on the meta device, run forward + backward on (1, seq_len); return the model."""
    from llm_model.transformer import Transformer

    with torch.device("meta"):
        model = Transformer(config)
        ids = torch.zeros(1, seq_len, dtype=torch.long)
        model(ids, ids)["loss"].backward()
    return model


def _table(seq_len: int, names: list[str] | None = None) -> str:
    head = f"{'preset':<13}{'params':>16}{'non-emb':>16}{'active':>16}"
    head += f"{'GFLOP/tok foundry':>20}{'GFLOP/tok exact':>18}  fwd+bwd(meta)"
    rows = [f"FLOPs at seq_len={seq_len}; 'foundry' = 6N + 12LdT, 'exact' see counting.py", head]
    from llm_model.counting import active_params

    for name in names or list(PRESETS):
        model = meta_check(PRESETS[name])
        rows.append(
            f"{name:<13}{model.num_params():>16,}{model.num_params(True):>16,}"
            f"{active_params(model):>16,}{model.flops_per_token(seq_len) / 1e9:>20.3f}"
            f"{model.flops_per_token(seq_len, exact=True) / 1e9:>18.3f}  ok"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Sizes and FLOPs of the model presets.")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("names", nargs="*", choices=[[], *PRESETS], help="presets (default all)")
    args = parser.parse_args()
    print(_table(args.seq_len, args.names))  # a CLI table: print, not logging
