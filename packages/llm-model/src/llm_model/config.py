"""ModelConfig: every architectural choice of the transformer, typed and validated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Literal, get_args

from llm_model.position import RopeScaling

Activation = Literal["swiglu", "geglu", "gelu", "relu"]
Norm = Literal["rmsnorm", "layernorm", "layernorm_np"]
NormPosition = Literal["pre", "post", "sublayer"]
Position = Literal["rope", "alibi", "learned", "none"]
RopeScalingKind = Literal["none", "linear", "yarn", "llama3"]
QKNorm = Literal["none", "head", "full"]
Init = Literal["normal", "scaled", "mitchell"]
AttnBackend = Literal["sdpa", "flash"]

__all__ = ["WEIGHT_FREE_FIELDS", "ModelConfig", "weight_fields"]


def _check_choice(name: str, value: str, choices: type) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"ModelConfig.{name}={value!r} is not one of {list(allowed)}")


def _check_positive(name: str, value: int | float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"ModelConfig.{name}={value!r} must be {bound}")


@dataclass(kw_only=True)
class ModelConfig:
    """Configuration of a decoder-only transformer.

    Attributes:
        d_model: Residual stream width.
        n_layers: Number of transformer blocks.
        n_heads: Number of query heads.
        n_kv_heads: Number of key/value heads (None = n_heads: MHA; 1: MQA; else GQA).
        head_dim: Per-head width (None = d_model // n_heads).
        vocab_size: Number of token ids.
        max_seq_len: Longest sequence (size of learned position table; RoPE has no limit).
        ffn_hidden: FFN hidden width. None = 4*d_model for GELU/ReLU, and for gated
            activations int(8*d_model/3) rounded up to ``multiple_of`` (Llama rule).
        multiple_of: Rounding for the default gated hidden width.
        activation: "swiglu", "geglu" (gated), "gelu" (exact erf GELU) or "relu".
        norm: "rmsnorm", "layernorm" (with weight, and bias if ``bias``) or "layernorm_np"
            (non-parametric LayerNorm, OLMo-1 style: no weight, no bias).
        norm_position: "pre" (x + f(norm(x))), "post" (norm(x + f(x)), original transformer)
            or "sublayer" (x + norm(f(x)), OLMo-2's reordered norm).
        norm_eps: Epsilon inside the norms.
        low_precision_norm: Compute norms in the input dtype (MPT) instead of float32.
        qk_norm: Normalise queries and keys before attention: "none", "head" (per head,
            over head_dim) or "full" (over the whole projection width, OLMo-2).
        position: "rope", "alibi", "learned" (absolute table) or "none".
        rope_theta: RoPE base.
        rotary_pct: Fraction of head_dim that RoPE rotates (partial rotary, GPT-NeoX).
        rope_interleaved: Rotate pairs (2i, 2i+1) (Meta's original) instead of
            (i, i + rot/2) (GPT-NeoX / Hugging Face Llama layout).
        rope_scaling: Context extension of RoPE: "none", "linear" (position interpolation),
            "yarn" or "llama3" (Llama 3.1); see ``llm_model.position.RopeScaling``.
        rope_factor: Extension factor of ``rope_scaling``.
        rope_original_max_seq_len: Pretraining context for "yarn" (0 = max_seq_len) and
            "llama3" (required).
        rope_low_freq_factor: "llama3": low-frequency bound (Llama 3.1: 1).
        rope_high_freq_factor: "llama3": high-frequency bound (Llama 3.1: 4).
        rope_beta_fast: "yarn": rotations bounding the kept dims (YaRN: 32).
        rope_beta_slow: "yarn": rotations bounding the interpolated dims (YaRN: 1).
        rope_attention_factor: "yarn": cos/sin multiplier (0 = 0.1 ln(rope_factor) + 1).
        sliding_window: Attend to at most this many most recent tokens (0 = unlimited).
        attn_backend: "sdpa" (torch picks flash / cuDNN / memory-efficient / math) or
            "flash" (flash-attn package, CUDA only).
        doc_mask_eos_id: If set, packed sequences are split into documents after each token
            with this id and tokens attend only within their own document.
        bias: Biases in linear layers (and LayerNorm).
        tie_embeddings: Share the input embedding and the output projection.
        dropout: Dropout on attention weights and residual branches.
        z_loss: Coefficient of mean(logsumexp(logits)^2) added to the loss (PaLM).
        init: "normal" (N(0, init_std) everywhere), "scaled" (output projections divided by
            sqrt(2 * n_layers), GPT-2) or "mitchell" (OLMo: 1/sqrt(fan_in), outputs scaled
            by depth, truncated at 3 std).
        init_std: Standard deviation for "normal" and "scaled".
        n_experts: Experts per MoE layer (0 = dense FFN everywhere).
        moe_top_k: Experts each token is routed to.
        moe_shared_experts: Always-on experts added to the routed ones (DeepSeekMoE).
        moe_ffn_hidden: Hidden width of one expert (None = ffn_hidden).
        moe_every: Every moe_every-th block is MoE (1 = all blocks).
        moe_aux_coef: Coefficient of the load-balancing loss (Switch Transformer).
        moe_router_z_coef: Coefficient of the router z-loss (ST-MoE).
        kernels: Use llm-kernels (RMSNorm, SwiGLU, RoPE, fused linear cross-entropy) when it
            is installed and tensors are on CUDA.
    """

    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int = 50304
    max_seq_len: int = 2048
    ffn_hidden: int | None = None
    multiple_of: int = 256
    activation: Activation = "swiglu"
    norm: Norm = "rmsnorm"
    norm_position: NormPosition = "pre"
    norm_eps: float = 1e-5
    low_precision_norm: bool = False
    qk_norm: QKNorm = "none"
    position: Position = "rope"
    rope_theta: float = 10000.0
    rotary_pct: float = 1.0
    rope_interleaved: bool = False
    rope_scaling: RopeScalingKind = "none"
    rope_factor: float = 1.0
    rope_original_max_seq_len: int = 0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_beta_fast: float = 32.0
    rope_beta_slow: float = 1.0
    rope_attention_factor: float = 0.0
    sliding_window: int = 0
    attn_backend: AttnBackend = "sdpa"
    doc_mask_eos_id: int | None = None
    bias: bool = False
    tie_embeddings: bool = False
    dropout: float = 0.0
    z_loss: float = 0.0
    init: Init = "normal"
    init_std: float = 0.02
    n_experts: int = 0
    moe_top_k: int = 2
    moe_shared_experts: int = 0
    moe_ffn_hidden: int | None = None
    moe_every: int = 1
    moe_aux_coef: float = 0.01
    moe_router_z_coef: float = 0.001
    kernels: bool = True

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "vocab_size", "max_seq_len"):
            _check_positive(name, getattr(self, name))
        for f in fields(self):  # a string "false" would otherwise read as True
            if f.type in (bool, "bool") and not isinstance(getattr(self, f.name), bool):
                raise ValueError(
                    f"ModelConfig.{f.name}={getattr(self, f.name)!r} must be True or False"
                )
        for name, kind in (
            ("activation", Activation),
            ("norm", Norm),
            ("norm_position", NormPosition),
            ("qk_norm", QKNorm),
            ("position", Position),
            ("rope_scaling", RopeScalingKind),
            ("init", Init),
            ("attn_backend", AttnBackend),
        ):
            _check_choice(name, getattr(self, name), kind)
        self._check_heads()
        self._check_ranges()
        self._check_moe()
        self._check_rope_scaling()

    def _check_heads(self) -> None:
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig.n_heads={self.n_heads} must divide d_model={self.d_model} "
                "(or set head_dim explicitly)"
            )
        if self.head_dim is not None:
            _check_positive("head_dim", self.head_dim)
        kv = self.kv_heads
        if kv <= 0 or self.n_heads % kv:
            raise ValueError(
                f"ModelConfig.n_kv_heads={self.n_kv_heads} must be a positive divisor of "
                f"n_heads={self.n_heads} (GQA groups must divide the heads)"
            )
        if self.position == "rope" and self.rotary_dim % 2:
            raise ValueError(
                f"ModelConfig.rotary_pct={self.rotary_pct} gives an odd rotary dim "
                f"{self.rotary_dim} (head_dim={self.dim_per_head}); it must be even"
            )

    def _check_ranges(self) -> None:
        if not 0.0 < self.rotary_pct <= 1.0:
            raise ValueError(f"ModelConfig.rotary_pct={self.rotary_pct} must be in (0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout={self.dropout} must be in [0, 1)")
        for name in ("z_loss", "norm_eps", "init_std", "sliding_window", "rope_theta"):
            _check_positive(name, getattr(self, name), allow_zero=name != "rope_theta")
        if self.ffn_hidden is not None:
            _check_positive("ffn_hidden", self.ffn_hidden)
        _check_positive("multiple_of", self.multiple_of)
        if self.position == "learned" and self.max_seq_len > 1 << 20:
            raise ValueError(f"ModelConfig.max_seq_len={self.max_seq_len} too large for a table")

    def _check_moe(self) -> None:
        _check_positive("n_experts", self.n_experts, allow_zero=True)
        if self.n_experts == 0:
            return
        if not 1 <= self.moe_top_k <= self.n_experts:
            raise ValueError(
                f"ModelConfig.moe_top_k={self.moe_top_k} must be in [1, n_experts={self.n_experts}]"
            )
        _check_positive("moe_shared_experts", self.moe_shared_experts, allow_zero=True)
        _check_positive("moe_every", self.moe_every)
        if self.moe_ffn_hidden is not None:
            _check_positive("moe_ffn_hidden", self.moe_ffn_hidden)
        for name in ("moe_aux_coef", "moe_router_z_coef"):
            _check_positive(name, getattr(self, name), allow_zero=True)

    def _check_rope_scaling(self) -> None:
        if self.rope_scaling == "none":
            return
        if self.position != "rope":
            raise ValueError(
                f"ModelConfig.rope_scaling={self.rope_scaling!r} needs position='rope', "
                f"not {self.position!r}"
            )
        _check_positive("rope_factor", self.rope_factor)
        for name in ("rope_original_max_seq_len", "rope_attention_factor"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if self.rope_scaling == "llama3":
            if self.rope_original_max_seq_len <= 0:
                raise ValueError(
                    "ModelConfig.rope_original_max_seq_len must be > 0 (the pretraining "
                    "context) for rope_scaling='llama3'"
                )
            if not 0 < self.rope_low_freq_factor < self.rope_high_freq_factor:
                raise ValueError(
                    f"ModelConfig.rope_low_freq_factor={self.rope_low_freq_factor} and "
                    f"rope_high_freq_factor={self.rope_high_freq_factor} must satisfy "
                    "0 < low < high"
                )
        if self.rope_scaling == "yarn" and not 0 < self.rope_beta_slow < self.rope_beta_fast:
            raise ValueError(
                f"ModelConfig.rope_beta_slow={self.rope_beta_slow} and rope_beta_fast="
                f"{self.rope_beta_fast} must satisfy 0 < beta_slow < beta_fast"
            )

    @property
    def rope_scaling_params(self) -> RopeScaling | None:
        """The RoPE scaling that ``rope_cos_sin`` applies (None when rope_scaling='none')."""
        if self.rope_scaling == "none":
            return None
        return RopeScaling(
            kind=self.rope_scaling,
            factor=self.rope_factor,
            original_max_seq_len=self.rope_original_max_seq_len or self.max_seq_len,
            low_freq_factor=self.rope_low_freq_factor,
            high_freq_factor=self.rope_high_freq_factor,
            beta_fast=self.rope_beta_fast,
            beta_slow=self.rope_beta_slow,
            attention_factor=self.rope_attention_factor,
        )

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads actually used."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def dim_per_head(self) -> int:
        """Per-head width actually used."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        """Number of leading head dims that RoPE rotates."""
        return int(self.dim_per_head * self.rotary_pct)

    @property
    def gated(self) -> bool:
        """Whether the FFN is gated (three matrices) or plain (two)."""
        return self.activation in ("swiglu", "geglu")

    @property
    def hidden_dim(self) -> int:
        """FFN hidden width actually used."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        if not self.gated:
            return 4 * self.d_model
        hidden = int(8 * self.d_model / 3)
        return self.multiple_of * -(-hidden // self.multiple_of)

    @property
    def expert_hidden_dim(self) -> int:
        """Hidden width of one MoE expert."""
        return self.moe_ffn_hidden if self.moe_ffn_hidden is not None else self.hidden_dim

    def is_moe_layer(self, layer_id: int) -> bool:
        """Whether block ``layer_id`` uses an MoE FFN."""
        return self.n_experts > 0 and (layer_id + 1) % self.moe_every == 0


# Fields the trained weights do not depend on, so a warm start (``train.init_from``) may change
# them: the context length and RoPE settings (context extension), attention kernel and window,
# document masking, dropout, loss terms, initialisation and kernels. ``multiple_of``,
# ``ffn_hidden``, ``n_kv_heads`` and ``head_dim`` are compared through the widths they give.
WEIGHT_FREE_FIELDS = frozenset(
    {
        "max_seq_len", "rope_theta", "rope_scaling", "rope_factor", "rope_original_max_seq_len",
        "rope_low_freq_factor", "rope_high_freq_factor", "rope_beta_fast", "rope_beta_slow",
        "rope_attention_factor", "sliding_window", "attn_backend", "doc_mask_eos_id", "dropout",
        "z_loss", "init", "init_std", "moe_aux_coef", "moe_router_z_coef", "kernels",
        "multiple_of", "ffn_hidden", "n_kv_heads", "head_dim", "moe_ffn_hidden",
    }
)  # fmt: skip


def weight_fields(c: ModelConfig) -> dict:
    """The settings trained weights depend on (shapes and what they compute): two configs with
    equal ``weight_fields`` can exchange weights; every other field is ``WEIGHT_FREE_FIELDS``."""
    kept = {k: v for k, v in dataclasses.asdict(c).items() if k not in WEIGHT_FREE_FIELDS}
    widths = {"kv_heads": c.kv_heads, "dim_per_head": c.dim_per_head, "hidden_dim": c.hidden_dim}
    return kept | widths | {"expert_hidden_dim": c.expert_hidden_dim}
