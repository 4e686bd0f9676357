"""Which Hugging Face architectures a ModelConfig can be exported as, and what an export loses.

Each architecture lists the ModelConfig values it needs; a config that differs anywhere is
refused with one error naming every field, so a user fixes them all at once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from llm_model.config import ModelConfig

__all__ = [
    "ARCHITECTURES",
    "IMPORTABLE",
    "HFExportWarning",
    "arch_spec",
    "check_llama_compatible",
    "incompatibilities",
    "llama_incompatibilities",
    "lossy_fields",
    "pick_architecture",
    "warn_or_refuse_lossy",
]


@dataclass(frozen=True)
class _Arch:
    """A transformers architecture: the ModelConfig values it needs and its block names."""

    model_type: str
    architecture: str
    needs: dict
    norms: tuple[str, str]  # Hugging Face names of our attn_norm and ffn_norm


_LLAMA_NEEDS = {
    "position": "rope", "norm": "rmsnorm", "norm_position": "pre", "activation": "swiglu",
    "qk_norm": "none", "rope_interleaved": False, "rotary_pct": 1.0, "sliding_window": 0,
    "n_experts": 0, "low_precision_norm": False,
}  # fmt: skip
ARCHITECTURES = {
    "llama": _Arch(
        "llama", "LlamaForCausalLM", _LLAMA_NEEDS, ("input_layernorm", "post_attention_layernorm")
    ),
    # OLMo 2: norms on the sublayer outputs (x + norm(f(x))), RMSNorm over all of q and of k
    "olmo2": _Arch(
        "olmo2", "Olmo2ForCausalLM",
        {**_LLAMA_NEEDS, "norm_position": "sublayer", "qk_norm": "full", "bias": False},
        ("post_attention_layernorm", "post_feedforward_layernorm"),
    ),
    # GPT-2: learned positions, LayerNorm, exact GELU ("gelu"), biases, one fused qkv matrix;
    # export only (its Conv1D weights are stored transposed)
    "gpt2": _Arch(
        "gpt2", "GPT2LMHeadModel",
        {"position": "learned", "norm": "layernorm", "norm_position": "pre", "activation": "gelu",
         "qk_norm": "none", "bias": True, "sliding_window": 0, "n_experts": 0,
         "low_precision_norm": False},
        ("ln_1", "ln_2"),
    ),
}  # fmt: skip
IMPORTABLE = ("llama", "olmo2")


class HFExportWarning(UserWarning):
    """The exported model computes something other than the trained one on some inputs."""


def arch_spec(name: str) -> _Arch:
    """The ARCHITECTURES entry ``name``, or an error listing the known ones."""
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is not one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def incompatibilities(config: ModelConfig, arch: str = "llama") -> list[str]:
    """Every field ``arch`` cannot represent, as ``ModelConfig.field=value (...)``."""
    needs = arch_spec(arch).needs
    problems = [
        f"ModelConfig.{field}={getattr(config, field)!r} ({arch} needs {needed!r})"
        for field, needed in needs.items()
        if getattr(config, field) != needed
    ]
    if arch == "gpt2" and config.kv_heads != config.n_heads:
        problems.append(f"ModelConfig.n_kv_heads={config.n_kv_heads!r} (gpt2 needs n_heads)")
    if arch == "gpt2" and config.dim_per_head * config.n_heads != config.d_model:
        problems.append(f"ModelConfig.head_dim={config.head_dim!r} (gpt2 needs d_model/n_heads)")
    return problems


def llama_incompatibilities(config: ModelConfig) -> list[str]:
    """Every field a Llama checkpoint cannot represent."""
    return incompatibilities(config, "llama")


def check_llama_compatible(config: ModelConfig) -> None:
    """Raise one ValueError naming every field a Llama checkpoint cannot represent."""
    pick_architecture(config, "llama")


def pick_architecture(config: ModelConfig, arch: str = "auto") -> str:
    """``arch``, or for "auto" the first of ARCHITECTURES that represents ``config``.

    Raises:
        ValueError: one error naming, per architecture tried, every field it cannot represent.
    """
    tried = list(ARCHITECTURES) if arch == "auto" else [arch_spec(arch).model_type]
    problems = {name: incompatibilities(config, name) for name in tried}
    for name, found in problems.items():
        if not found:
            return name
    raise ValueError(
        "cannot export: "
        + " | ".join(f"as {name}: {'; '.join(found)}" for name, found in problems.items())
    )


def lossy_fields(config: ModelConfig) -> list[str]:
    """What the export drops that changes outputs on some inputs (warned, or refused if strict).

    Document masking: the trained model lets a token attend only within its document, split
    after each ``doc_mask_eos_id``; no exported architecture has such a mask. On one document
    (a prompt without that id inside, the usual generation case) logits are identical; on
    packed sequences with the id inside they differ.
    """
    if config.doc_mask_eos_id is None:
        return []
    return [
        f"ModelConfig.doc_mask_eos_id={config.doc_mask_eos_id}: the model was trained with "
        "document masking, which the exported architecture cannot express; logits match on a "
        f"single document but differ on inputs that contain token {config.doc_mask_eos_id} "
        "before their end (split packed sequences at it before feeding the exported model)"
    ]


def warn_or_refuse_lossy(config: ModelConfig, strict: bool) -> None:
    """Warn (HFExportWarning) about each lossy field, or with ``strict`` raise one error."""
    lossy = lossy_fields(config)
    if lossy and strict:
        raise ValueError(f"refusing a lossy export (strict): {'; '.join(lossy)}")
    for message in lossy:
        warnings.warn(message, HFExportWarning, stacklevel=3)
