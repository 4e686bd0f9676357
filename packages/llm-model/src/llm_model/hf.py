"""Hugging Face Llama checkpoints: export (config.json + model.safetensors) and import.

Needs the [hf] extra (safetensors). Our RoPE layout (pairs (i, i + D/2)) is Hugging Face's,
so q/k weights are copied without permutation.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from llm_model.config import ModelConfig
from llm_model.transformer import Transformer

__all__ = ["export_hf", "import_hf", "check_llama_compatible"]

# the fields a Llama checkpoint cannot express, with the value it needs
_LLAMA_FIXED = {
    "position": "rope",
    "norm": "rmsnorm",
    "norm_position": "pre",
    "activation": "swiglu",
    "qk_norm": "none",
    "rope_interleaved": False,
    "rotary_pct": 1.0,
    "sliding_window": 0,
    "n_experts": 0,
    "low_precision_norm": False,
}


def check_llama_compatible(config: ModelConfig) -> None:
    """Raise ValueError naming the first field a Llama checkpoint cannot represent."""
    for field, needed in _LLAMA_FIXED.items():
        value = getattr(config, field)
        if value != needed:
            raise ValueError(
                f"ModelConfig.{field}={value!r} cannot be exported as Llama (needs {needed!r})"
            )


def _hf_config(c: ModelConfig) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
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
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": c.bias,
        "mlp_bias": c.bias,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }


def _name_map(n_layers: int) -> dict[str, str]:
    """Our state-dict names -> Hugging Face Llama names (weights and biases)."""
    names = {"tok_emb.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    names["output.weight"] = "lm_head.weight"
    parts = {
        "attn.wq": "self_attn.q_proj", "attn.wk": "self_attn.k_proj",
        "attn.wv": "self_attn.v_proj", "attn.wo": "self_attn.o_proj",
        "ffn.w1": "mlp.gate_proj", "ffn.w3": "mlp.up_proj", "ffn.w2": "mlp.down_proj",
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    }  # fmt: skip
    for i in range(n_layers):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{kind}"] = f"model.layers.{i}.{theirs}.{kind}"
    return names


def export_hf(model: Transformer, path: str | os.PathLike, dtype: torch.dtype | None = None):
    """Write ``path``/config.json and model.safetensors loadable by AutoModelForCausalLM.

    The directory is written under a temporary name and renamed, so it is never half-written.

    Args:
        model: A Transformer whose config is Llama-compatible.
        path: Output directory (replaced if it exists).
        dtype: Cast weights to this dtype (default: keep).
    """
    from safetensors.torch import save_file

    check_llama_compatible(model.config)
    names = _name_map(model.config.n_layers)
    state = {}
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu", dtype or t.dtype).contiguous()
        state[names[key]] = t
    cfg = _hf_config(model.config)
    cfg["torch_dtype"] = str(next(iter(state.values())).dtype).removeprefix("torch.")
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def config_from_hf(hf: dict, **overrides) -> ModelConfig:
    """ModelConfig for a Hugging Face Llama config.json dict."""
    if hf.get("model_type") != "llama":
        raise ValueError(f"config.json model_type={hf.get('model_type')!r}: only 'llama' reads")
    head_dim = hf.get("head_dim")
    if head_dim == hf["hidden_size"] // hf["num_attention_heads"]:
        head_dim = None  # the default; keeps round-tripped configs equal
    return ModelConfig(
        d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        n_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
        head_dim=head_dim, vocab_size=hf["vocab_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048),
        ffn_hidden=hf["intermediate_size"], norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=hf.get("rope_theta", 10000.0),
        tie_embeddings=hf.get("tie_word_embeddings", False),
        bias=hf.get("attention_bias", False), activation="swiglu", norm="rmsnorm",
        position="rope", **overrides,
    )  # fmt: skip


def import_hf(path: str | os.PathLike, **overrides) -> Transformer:
    """Load a Llama checkpoint directory (config.json + model.safetensors) as a Transformer.

    Args:
        path: Directory written by ``export_hf`` or a Hugging Face Llama checkpoint with one
            safetensors file.
        **overrides: ModelConfig fields to set on top (e.g. kernels=False).
    """
    from safetensors.torch import load_file

    path = Path(path)
    config = config_from_hf(json.loads((path / "config.json").read_text()), **overrides)
    theirs = load_file(path / "model.safetensors")
    ours = {v: k for k, v in _name_map(config.n_layers).items()}
    with torch.device("meta"):
        model = Transformer(config)
    state = {ours[k]: v for k, v in theirs.items() if k in ours}
    if config.tie_embeddings:
        state.pop("output.weight", None)
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{path}/model.safetensors lacks weights for {sorted(missing)[:5]}")
    model.load_state_dict(state, assign=True)
    return model
