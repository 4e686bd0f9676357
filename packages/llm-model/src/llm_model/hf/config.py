"""ModelConfig <-> Hugging Face config.json: the export dict and the import translation.

Import refuses, in one error naming each, every setting our model cannot reproduce, so a
checkpoint never loads into a model that computes something else.
"""

from __future__ import annotations

import torch

from llm_model.config import ModelConfig
from llm_model.hf.architectures import ARCHITECTURES, IMPORTABLE, arch_spec

__all__ = ["config_from_hf", "hf_config"]

_ROPE_KEYS = {
    "linear": {"factor"},
    "llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
    "yarn": {"factor", "beta_fast", "beta_slow", "original_max_position_embeddings",
             "attention_factor", "truncate"},
}  # fmt: skip
# Hugging Face rope_scaling keys -> ModelConfig fields (besides rope_type and factor)
_ROPE_RENAMES = {
    "original_max_position_embeddings": "rope_original_max_seq_len",
    "low_freq_factor": "rope_low_freq_factor", "high_freq_factor": "rope_high_freq_factor",
    "beta_fast": "rope_beta_fast", "beta_slow": "rope_beta_slow",
    "attention_factor": "rope_attention_factor",
}  # fmt: skip


# --- export -----------------------------------------------------------------------------------


def hf_config(
    c: ModelConfig,
    *,
    arch: str = "llama",
    dtype: torch.dtype = torch.float32,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> dict:
    """The Hugging Face config.json dict of ``c`` as architecture ``arch`` (llama, olmo2, gpt2).

    The special-token ids are written even when None: transformers' Llama otherwise assumes
    bos=1 and eos=2, so ``generate()`` would stop on the wrong token.
    """
    tokens = {
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if arch == "gpt2":
        return _gpt2_config(c, tokens)
    return _llama_config(c, arch, tokens)


def _gpt2_config(c: ModelConfig, tokens: dict) -> dict:
    """GPT-2's config.json: its own key names, and no dropout (we train without)."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.max_seq_len, "n_embd": c.d_model,
        "n_layer": c.n_layers, "n_head": c.n_heads, "n_inner": c.hidden_dim,
        "activation_function": "gelu", "layer_norm_epsilon": c.norm_eps,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "tie_word_embeddings": c.tie_embeddings, **tokens,
    }  # fmt: skip


def _llama_config(c: ModelConfig, arch: str, tokens: dict) -> dict:
    """The config.json of the Llama family (Llama, OLMo 2), which share their key names."""
    return {
        "architectures": [arch_spec(arch).architecture],
        "model_type": arch,
        "hidden_size": c.d_model,
        "intermediate_size": c.hidden_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.dim_per_head,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": _rope_scaling(c),
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": c.bias,
        "mlp_bias": c.bias,
        "hidden_act": "silu",
        **tokens,
    }


def _rope_scaling(c: ModelConfig) -> dict | None:
    """Hugging Face's ``rope_scaling`` dict for our rope_* fields (None: unscaled)."""
    if c.rope_scaling == "none":
        return None
    out: dict = {"rope_type": c.rope_scaling, "factor": float(c.rope_factor)}
    if c.rope_scaling == "llama3":
        out |= {
            "low_freq_factor": float(c.rope_low_freq_factor),
            "high_freq_factor": float(c.rope_high_freq_factor),
            "original_max_position_embeddings": c.rope_original_max_seq_len,
        }
    elif c.rope_scaling == "yarn":
        out |= {"beta_fast": float(c.rope_beta_fast), "beta_slow": float(c.rope_beta_slow)}
        if c.rope_original_max_seq_len:
            out["original_max_position_embeddings"] = c.rope_original_max_seq_len
        if c.rope_attention_factor:
            out["attention_factor"] = float(c.rope_attention_factor)
    return out


# --- import -----------------------------------------------------------------------------------


def config_from_hf(hf: dict, source: str = "config.json", **overrides) -> ModelConfig:
    """ModelConfig for a Hugging Face Llama or OLMo 2 config.json dict.

    Raises one ValueError naming every setting our model cannot reproduce (another model type,
    another activation, separate attention / MLP biases, unsupported RoPE scaling, ...).
    """
    arch = hf.get("model_type")
    if arch not in IMPORTABLE:
        raise ValueError(f"{source}: model_type={arch!r} does not import (only {list(IMPORTABLE)})")
    rope, rope_problems = _rope_fields(hf.get("rope_scaling"), source)
    problems = _block_problems(hf, arch, source) + rope_problems
    if problems:
        raise ValueError("cannot import: " + "; ".join(problems))
    head_dim = hf.get("head_dim")
    if head_dim == hf["hidden_size"] // hf["num_attention_heads"]:
        head_dim = None  # the default; keeps round-tripped configs equal
    return ModelConfig(
        d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        head_dim=head_dim, vocab_size=hf["vocab_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048),
        ffn_hidden=hf["intermediate_size"], norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=hf.get("rope_theta", 10000.0),
        tie_embeddings=hf.get("tie_word_embeddings", False),
        bias=hf.get("attention_bias", False), activation="swiglu", norm="rmsnorm",
        position="rope", norm_position=ARCHITECTURES[arch].needs["norm_position"],
        qk_norm=ARCHITECTURES[arch].needs["qk_norm"], **{**rope, **overrides},
    )  # fmt: skip


def _block_problems(hf: dict, arch: str, source: str) -> list[str]:
    """The activation and bias settings of ``hf`` that our blocks cannot reproduce."""
    problems = []
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"{source}: hidden_act={hf['hidden_act']!r} (only 'silu')")
    bias = hf.get("attention_bias", False)
    if hf.get("mlp_bias", bias) != bias:
        problems.append(
            f"{source}: attention_bias={bias} and mlp_bias={hf['mlp_bias']} differ "
            "(ModelConfig.bias sets both)"
        )
    if arch == "olmo2" and bias:
        problems.append(f"{source}: attention_bias=True (OLMo 2 here has no biases)")
    return problems


def _rope_fields(scaling: dict | None, source: str) -> tuple[dict, list[str]]:
    """(ModelConfig rope_* fields, problems) for a Hugging Face ``rope_scaling`` dict."""
    if not scaling:
        return {}, []
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return {}, []
    if kind not in _ROPE_KEYS:
        return {}, [
            f"{source}: rope_scaling type {kind!r} is not supported "
            f"(supported: {sorted(_ROPE_KEYS)}; 'dynamic' and 'longrope' are not)"
        ]
    problems = _rope_problems(scaling, kind, source)
    if problems:
        return {}, problems
    out = {"rope_scaling": kind, "rope_factor": float(scaling["factor"])}
    for theirs, ours in _ROPE_RENAMES.items():
        if scaling.get(theirs) is not None:
            out[ours] = scaling[theirs]
    return out, []


def _rope_problems(scaling: dict, kind: str, source: str) -> list[str]:
    """Keys of a ``kind`` rope_scaling dict that we do not implement, or that it lacks."""
    extra = set(scaling) - _ROPE_KEYS[kind] - {"rope_type", "type"}
    problems = [f"{source}: rope_scaling.{k} is not supported for {kind!r}" for k in sorted(extra)]
    if kind == "yarn" and scaling.get("truncate", True) is not True:
        problems.append(f"{source}: rope_scaling.truncate=False is not supported (only True)")
    missing = {"factor"} | ({"low_freq_factor", "high_freq_factor"} if kind == "llama3" else set())
    missing |= {"original_max_position_embeddings"} if kind == "llama3" else set()
    problems += [
        f"{source}: rope_scaling lacks {k!r} for {kind!r}" for k in sorted(missing - set(scaling))
    ]
    return problems
