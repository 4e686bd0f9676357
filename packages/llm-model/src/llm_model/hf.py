"""Hugging Face checkpoints: export as Llama, OLMo 2 or GPT-2 (sharded safetensors); import.

Needs the [hf] extra (safetensors). Our RoPE layout (pairs (i, i + D/2)) is Hugging Face's,
so q/k weights are copied without permutation.

Export streams: ``write_hf_checkpoint`` takes tensors as (name, shape, dtype, load) entries and
writes each safetensors file header first, then one tensor at a time, so a caller that loads
tensors lazily (``tools/convert`` from a DCP checkpoint) never holds the whole model. Files above
``shard_size`` are split as ``model-0000i-of-0000n.safetensors`` with
``model.safetensors.index.json``, the layout ``from_pretrained`` reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_model.config import ModelConfig
from llm_model.transformer import Transformer

__all__ = [
    "ARCHITECTURES",
    "HFExportWarning",
    "TensorEntry",
    "check_llama_compatible",
    "config_from_hf",
    "export_hf",
    "hf_config",
    "hf_entries",
    "hf_name_map",
    "import_hf",
    "incompatibilities",
    "llama_incompatibilities",
    "lossy_fields",
    "parse_size",
    "pick_architecture",
    "warn_or_refuse_lossy",
    "write_hf_checkpoint",
]

DEFAULT_SHARD_SIZE = 5 * 10**9  # transformers' save_pretrained default ("5GB")
INDEX = "model.safetensors.index.json"


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

_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


class HFExportWarning(UserWarning):
    """The exported model computes something other than the trained one on some inputs."""


def incompatibilities(config: ModelConfig, arch: str = "llama") -> list[str]:
    """Every field ``arch`` cannot represent, as ``ModelConfig.field=value (...)``."""
    needs = _arch(arch).needs
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
    tried = list(ARCHITECTURES) if arch == "auto" else [_arch(arch).model_type]
    problems = {name: incompatibilities(config, name) for name in tried}
    for name, found in problems.items():
        if not found:
            return name
    raise ValueError(
        "cannot export: "
        + " | ".join(f"as {name}: {'; '.join(found)}" for name, found in problems.items())
    )


def _arch(name: str) -> _Arch:
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is not one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


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


def _rope_scaling(c: ModelConfig) -> dict | None:
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
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": c.vocab_size, "n_positions": c.max_seq_len, "n_embd": c.d_model,
            "n_layer": c.n_layers, "n_head": c.n_heads, "n_inner": c.hidden_dim,
            "activation_function": "gelu", "layer_norm_epsilon": c.norm_eps,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "tie_word_embeddings": c.tie_embeddings, **tokens,
        }  # fmt: skip
    return {
        "architectures": [_arch(arch).architecture],
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
        "attn_norm": _arch(arch).norms[0], "ffn_norm": _arch(arch).norms[1],
        "attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm",
    }  # fmt: skip
    for i in range(config.n_layers):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{kind}"] = f"model.layers.{i}.{theirs}.{kind}"
    return names


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


def _gpt2_entries(config: ModelConfig, ours: dict[str, TensorEntry]) -> list[TensorEntry]:
    def rename(src: str, dst: str) -> TensorEntry:
        return dataclasses.replace(ours[src], name=dst)

    def transposed(src: str, dst: str) -> TensorEntry:
        e = ours[src]
        return TensorEntry(dst, e.shape[::-1], e.dtype, lambda: e.load().T)

    def fused(srcs: list[str], dst: str) -> TensorEntry:  # q, k, v stacked, then transposed
        parts = [ours[k] for k in srcs]
        shape = (sum(e.shape[0] for e in parts), *parts[0].shape[1:])[::-1]
        return TensorEntry(
            dst, shape, parts[0].dtype, lambda: torch.cat([e.load() for e in parts]).T
        )

    out = [rename("tok_emb.weight", "transformer.wte.weight"),
           rename("pos_emb.weight", "transformer.wpe.weight")]  # fmt: skip
    for i in range(config.n_layers):
        b, h = f"blocks.{i}.", f"transformer.h.{i}."
        for kind in ("weight", "bias"):
            out.append(rename(f"{b}attn_norm.{kind}", f"{h}ln_1.{kind}"))
            out.append(rename(f"{b}ffn_norm.{kind}", f"{h}ln_2.{kind}"))
        out += [
            fused([f"{b}attn.w{x}.weight" for x in "qkv"], f"{h}attn.c_attn.weight"),
            fused([f"{b}attn.w{x}.bias" for x in "qkv"], f"{h}attn.c_attn.bias"),
            transposed(f"{b}attn.wo.weight", f"{h}attn.c_proj.weight"),
            rename(f"{b}attn.wo.bias", f"{h}attn.c_proj.bias"),
            transposed(f"{b}ffn.w1.weight", f"{h}mlp.c_fc.weight"),
            rename(f"{b}ffn.w1.bias", f"{h}mlp.c_fc.bias"),
            transposed(f"{b}ffn.w2.weight", f"{h}mlp.c_proj.weight"),
            rename(f"{b}ffn.w2.bias", f"{h}mlp.c_proj.bias"),
        ]
    out += [rename("norm.weight", "transformer.ln_f.weight"),
            rename("norm.bias", "transformer.ln_f.bias")]  # fmt: skip
    if not config.tie_embeddings:
        out.append(rename("output.weight", "lm_head.weight"))
    return out


def parse_size(text: str | int) -> int:
    """Bytes in ``"5GB"``, ``"500MB"``, ``"2GiB"`` or a plain integer (transformers' units)."""
    if isinstance(text, int):
        return text
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    s = text.strip().upper()
    for unit, mult in units.items():
        if s.endswith(unit) and s[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(s[: -len(unit)]) * mult)
    if s.isdigit():
        return int(s)
    raise ValueError(f"size {text!r}: expected a number with KB/MB/GB/KiB/MiB/GiB, e.g. '5GB'")


def _plan_shards(entries: list[TensorEntry], shard_size: int) -> list[list[TensorEntry]]:
    """Consecutive groups of at most shard_size bytes (a bigger tensor gets a file alone)."""
    shards: list[list[TensorEntry]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + e.nbytes > shard_size:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += e.nbytes
    return shards


def _write_safetensors(path: Path, entries: list[TensorEntry]) -> None:
    """A safetensors file written header first, then tensor by tensor.

    Hand-written because safetensors' save_file takes every tensor of the file at once; the
    format (8-byte little-endian header length, JSON header, raw little-endian data) is fixed.
    """
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for e in entries:
        if e.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{e.name}: dtype {e.dtype} has no safetensors code")
        header[e.name] = {
            "dtype": _SAFETENSORS_DTYPES[e.dtype],
            "shape": list(e.shape),
            "data_offsets": [offset, offset + e.nbytes],
        }
        offset += e.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it
    with path.open("wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for e in entries:
            t = e.load()
            if tuple(t.shape) != e.shape:
                raise ValueError(f"{e.name}: loaded shape {tuple(t.shape)}, expected {e.shape}")
            t = t.detach().to("cpu", e.dtype).contiguous()
            f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            del t
        f.flush()
        os.fsync(f.fileno())


def write_hf_checkpoint(
    path: str | os.PathLike,
    config: dict,
    entries: Iterable[TensorEntry],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a Hugging Face checkpoint directory atomically (a temporary directory, renamed).

    Args:
        path: Output directory (replaced if it exists).
        config: config.json contents (``hf_config``); its token ids also go into
            generation_config.json (pad = eos there when there is no pad token).
        entries: Tensors in file order.
        shard_size: Largest safetensors file in bytes (one tensor larger than this gets a
            file alone); one file is ``model.safetensors`` without an index.
        extra_files: More files to write, name -> contents (tokenizer files).

    Returns:
        ``path``.
    """
    entries = list(entries)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(
            f"duplicate tensor names: {sorted({n for n in names if names.count(n) > 1})}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        shards = _plan_shards(entries, shard_size)
        files = ["model.safetensors"] if len(shards) == 1 else [
            f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
        ]  # fmt: skip
        for name, shard in zip(files, shards, strict=True):
            _write_safetensors(tmp / name, shard)
        if len(shards) > 1:
            weight_map = {
                e.name: name for name, shard in zip(files, shards, strict=True) for e in shard
            }
            index = {
                "metadata": {"total_size": sum(e.nbytes for e in entries)},
                "weight_map": weight_map,
            }
            (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        generation = {k: config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        if generation["pad_token_id"] is None:  # batched generate() pads finished rows with it
            generation["pad_token_id"] = generation["eos_token_id"]
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def warn_or_refuse_lossy(config: ModelConfig, strict: bool) -> None:
    """Warn (HFExportWarning) about each lossy field, or with ``strict`` raise one error."""
    lossy = lossy_fields(config)
    if lossy and strict:
        raise ValueError(f"refusing a lossy export (strict): {'; '.join(lossy)}")
    for message in lossy:
        warnings.warn(message, HFExportWarning, stacklevel=3)


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


# --- import -----------------------------------------------------------------------------------

_ROPE_KEYS = {
    "linear": {"factor"},
    "llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
    "yarn": {"factor", "beta_fast", "beta_slow", "original_max_position_embeddings",
             "attention_factor", "truncate"},
}  # fmt: skip


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
    extra = set(scaling) - _ROPE_KEYS[kind] - {"rope_type", "type"}
    problems = [f"{source}: rope_scaling.{k} is not supported for {kind!r}" for k in sorted(extra)]
    if kind == "yarn" and scaling.get("truncate", True) is not True:
        problems.append(f"{source}: rope_scaling.truncate=False is not supported (only True)")
    missing = {"factor"} | ({"low_freq_factor", "high_freq_factor"} if kind == "llama3" else set())
    missing |= {"original_max_position_embeddings"} if kind == "llama3" else set()
    problems += [
        f"{source}: rope_scaling lacks {k!r} for {kind!r}" for k in sorted(missing - set(scaling))
    ]
    if problems:
        return {}, problems
    out = {"rope_scaling": kind, "rope_factor": float(scaling["factor"])}
    renames = {
        "original_max_position_embeddings": "rope_original_max_seq_len",
        "low_freq_factor": "rope_low_freq_factor", "high_freq_factor": "rope_high_freq_factor",
        "beta_fast": "rope_beta_fast", "beta_slow": "rope_beta_slow",
        "attention_factor": "rope_attention_factor",
    }  # fmt: skip
    for theirs, ours in renames.items():
        if scaling.get(theirs) is not None:
            out[ours] = scaling[theirs]
    return out, []


def config_from_hf(hf: dict, source: str = "config.json", **overrides) -> ModelConfig:
    """ModelConfig for a Hugging Face Llama or OLMo 2 config.json dict.

    Raises one ValueError naming every setting our model cannot reproduce (another model type,
    another activation, separate attention / MLP biases, unsupported RoPE scaling, ...).
    """
    arch = hf.get("model_type")
    if arch not in IMPORTABLE:
        raise ValueError(f"{source}: model_type={arch!r} does not import (only {list(IMPORTABLE)})")
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
    rope, rope_problems = _rope_fields(hf.get("rope_scaling"), source)
    problems += rope_problems
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
        bias=bias, activation="swiglu", norm="rmsnorm", position="rope",
        norm_position=ARCHITECTURES[arch].needs["norm_position"],
        qk_norm=ARCHITECTURES[arch].needs["qk_norm"], **{**rope, **overrides},
    )  # fmt: skip


def _weight_files(path: Path) -> dict[str, Path]:
    """Hugging Face name -> safetensors file, from the index if there is one."""
    index = path / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: path / file for name, file in weight_map.items()}
    single = path / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{path} has neither {INDEX} nor model.safetensors")
    from safetensors import safe_open

    with safe_open(single, "pt") as f:
        return dict.fromkeys(f.keys(), single)


def _read_tensors(files: dict[str, Path], wanted: set[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every wanted name, one file open at a time."""
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for name, file in files.items():
        if name in wanted:
            by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with safe_open(file, "pt") as f:
            for name in names:
                yield name, f.get_tensor(name)


def import_hf(path: str | os.PathLike, **overrides) -> Transformer:
    """Load a Llama or OLMo 2 checkpoint directory (one safetensors file or sharded).

    Args:
        path: Directory written by ``export_hf`` or a Hugging Face Llama / OLMo 2 checkpoint.
        **overrides: ModelConfig fields to set on top (e.g. kernels=False).
    """
    path = Path(path)
    config_file = path / "config.json"
    config_json = json.loads(config_file.read_text())
    config = config_from_hf(config_json, str(config_file), **overrides)
    ours = {v: k for k, v in hf_name_map(config, config_json["model_type"]).items()}
    files = _weight_files(path)
    unknown = sorted(k for k in files if k not in ours and not k.endswith("rotary_emb.inv_freq"))
    if unknown:  # weights our model has no place for: loading without them would be wrong
        raise ValueError(f"{path}: tensors with no place in the model: {unknown[:5]}")
    with torch.device("meta"):
        model = Transformer(config)
    state = dict((ours[k], v) for k, v in _read_tensors(files, set(ours)))
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{path}: no weights for {sorted(missing)[:5]} ({len(missing)} missing)")
    model.load_state_dict(state, assign=True)
    return model
