"""Training memory of an llm-model preset: parameters, gradients, optimizer states, activations.

Run: ``uv run python -m tools.memory llama-7b --seq-len 4096 --micro-batch 1 --precision bf16
--activation-checkpointing --fsdp 8``.

What one device holds during a training step (single process, or FSDP2 over ``fsdp`` ranks):

  parameters      fp32 master weights, 4 bytes each, / fsdp
  gradients       fp32, 4 bytes each, / fsdp
  optimizer       AdamW: exp_avg + exp_avg_sq in fp32, 8 bytes/param; Lion: exp_avg only, 4
                  bytes/param; 8-bit AdamW: 2 bytes/param plus one fp32 scale per 256 values
                  per state; / fsdp
  weight copies   bf16 autocast without FSDP: each matmul weight cast once, kept for backward
                  (2 bytes/param); FSDP2 gathers bf16 groups instead, 2 at a time: a block and
                  the next, or the root (embeddings, head) and the last block around the loss
  activations     what autograd keeps from forward for backward, counted tensor by tensor for
                  llm-model's blocks below (per layer, and the embedding / head part once);
                  with activation checkpointing a block keeps only its input (fp32; bf16 under
                  FSDP2's bf16 param dtype), and backward recomputes one block at a time (its
                  activations once, on top)
  peak            parameters + optimizer + weight copies + max(activations + the loss's
                  backward buffer, gradients + one fp32 parameter-sized optimizer temporary)

The activation count follows the eager code path (``kernels=False``, or on a CPU) exactly for
fp32 and is checked against the bytes autograd really saves (``saved_activation_bytes``,
``tools/tests/test_memory.py``); the bf16 and llm-kernels rules (which tensors the Triton RMSNorm,
SwiGLU and fused cross-entropy keep) are from their ``save_for_backward`` calls and checked on a
GPU against ``torch.cuda.max_memory_allocated`` in the throughput benchmark's table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from typing import Literal

import torch

from llm_model import ModelConfig, Transformer, get_preset

__all__ = [
    "MemoryEstimate",
    "MemoryPlan",
    "estimate",
    "saved_activation_bytes",
    "state_bytes",
]

Precision = Literal["fp32", "bf16"]
Optimizer = Literal["adamw", "lion", "adamw8bit"]
# optimizer state bytes per parameter (8-bit AdamW: two 1-byte states + an fp32 scale per 256)
_OPTIMIZER_BYTES = {"adamw": 8.0, "lion": 4.0, "adamw8bit": 2.0 + 2 * 4 / 256}
GiB = 2**30


@dataclass(kw_only=True)
class MemoryPlan:
    """One training setting to estimate.

    Attributes:
        config: The model (``get_preset(name)``).
        seq_len: Tokens per sample T.
        micro_batch: Samples per forward B.
        precision: ``bf16`` autocast (llm-train on CUDA) or ``fp32``.
        optimizer: ``adamw`` (two fp32 states), ``lion`` (one) or ``adamw8bit``.
        activation_checkpointing: Each block recomputed in backward (llm-train's wrapper).
        fsdp: FSDP2 world size the parameters, gradients and optimizer are sharded over.
        kernels: llm-kernels run (CUDA and ``config.kernels``): their saved tensors are counted.
    """

    config: ModelConfig
    seq_len: int
    micro_batch: int
    precision: Precision = "bf16"
    optimizer: Optimizer = "adamw"
    activation_checkpointing: bool = False
    fsdp: int = 1
    kernels: bool = False

    def __post_init__(self) -> None:
        for name in ("seq_len", "micro_batch", "fsdp"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"MemoryPlan.{name}={value!r} must be an integer >= 1")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"MemoryPlan.precision={self.precision!r} is not 'fp32' or 'bf16'")
        if self.optimizer not in _OPTIMIZER_BYTES:
            raise ValueError(
                f"MemoryPlan.optimizer={self.optimizer!r} is not one of {sorted(_OPTIMIZER_BYTES)}"
            )
        if self.config.dropout > 0:
            raise ValueError("MemoryPlan.config.dropout > 0: dropout masks are not counted")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes on one device; ``peak`` is the high-water mark of a step (see the module doc)."""

    params: int
    gradients: int
    optimizer: int
    weight_copies: int
    activations: int
    activations_per_layer: int
    loss_buffer: int
    optimizer_temp: int

    @property
    def peak(self) -> int:
        resident = self.params + self.optimizer + self.weight_copies
        backward = self.activations + self.loss_buffer
        return resident + max(backward, self.gradients + self.optimizer_temp)

    def rows(self) -> list[tuple[str, float]]:
        """(label, GiB) for a table."""
        return [(f.name, getattr(self, f.name) / GiB) for f in fields(self)] + [
            ("peak", self.peak / GiB)
        ]


_COUNTS: dict[str, tuple[int, int, int]] = {}  # by repr(config): a search asks many times


def _param_counts(config: ModelConfig) -> tuple[int, int, int]:
    """(all parameters, matmul weights, one block's) of the model built on the meta device."""
    key = repr(config)
    if key not in _COUNTS:
        with torch.device("meta"):
            model = Transformer(config)
        matmul = sum(p.numel() for name, p in model.named_parameters() if _is_matmul(name, p))
        block = sum(p.numel() for p in model.blocks[0].parameters())
        _COUNTS[key] = (model.num_params(), matmul, block)
    return _COUNTS[key]


def estimate(plan: MemoryPlan) -> MemoryEstimate:
    """Estimate the memory of one training step of ``plan`` (no tensor is allocated)."""
    c = plan.config
    n, matmul, block = _param_counts(c)
    shard = plan.fsdp
    opt_per_param = _OPTIMIZER_BYTES[plan.optimizer]
    bf16 = plan.precision == "bf16"
    if not bf16:
        copies = 0
    elif shard == 1:
        copies = 2 * matmul  # autocast's bf16 weights, saved by each matmul for backward
    else:  # FSDP2 bf16 param dtype: two gathered groups at a time, the larger of a block and
        # the root (embeddings, final norm, head: gathered through the loss and its backward)
        root = n - c.n_layers * block
        copies = 2 * (block + max(block, root))
    per_layer = _layer_bytes(plan)
    acts = _base_bytes(plan)
    if plan.activation_checkpointing:
        acts += c.n_layers * _block_input_bytes(plan) + per_layer  # inputs + one recomputed
    else:
        acts += c.n_layers * per_layer
    tokens = plan.micro_batch * plan.seq_len
    fused = plan.kernels and bf16
    # backward of the loss: d(logits) in fp32 (B T V); the fused kernel computed it in forward
    loss_buffer = 0 if fused else 4 * tokens * c.vocab_size
    return MemoryEstimate(
        params=4 * n // shard,
        gradients=4 * n // shard,
        optimizer=int(opt_per_param * n) // shard,
        weight_copies=copies,
        activations=acts,
        activations_per_layer=per_layer,
        loss_buffer=loss_buffer,
        optimizer_temp=4 * n // shard,
    )


def _is_matmul(name: str, p: torch.nn.Parameter) -> bool:
    # embedding tables are looked up, not multiplied (a tied head multiplies tok_emb: counted)
    return p.dim() >= 2 and not name.startswith("pos_emb")


def _sizes(plan: MemoryPlan) -> dict[str, int]:
    c = plan.config
    bt = plan.micro_batch * plan.seq_len
    hidden = c.hidden_dim
    if c.n_experts:  # tokens reach top_k routed experts plus the shared ones
        hidden = c.expert_hidden_dim * (c.moe_top_k + c.moe_shared_experts)
    return {
        "bt": bt,
        "d": c.d_model,
        "q": c.n_heads * c.dim_per_head,
        "kv": c.kv_heads * c.dim_per_head,
        "f": hidden,
        "lse": plan.micro_batch * c.n_heads * plan.seq_len,
    }


def _block_input_bytes(plan: MemoryPlan) -> int:
    s = _sizes(plan)
    # One device: the residual stream is fp32 (fp32 embeddings + bf16 adds). FSDP2's bf16 param
    # dtype casts the embedding table too, so the stream is bf16 (pretrain plan measures it).
    width = 2 if plan.precision == "bf16" and plan.fsdp > 1 else 4
    return width * s["bt"] * s["d"]


def _norm_bytes(plan: MemoryPlan, rows: int, width: int) -> int:
    """What a norm keeps besides its input: rms: normalised x in fp32 + 1/rms per row
    (the Triton kernel: 1/rms only); LayerNorm: mean and 1/std per row."""
    c = plan.config
    if c.norm != "rmsnorm":
        return 2 * 4 * rows
    if plan.kernels and not c.low_precision_norm:
        return 4 * rows
    return 4 * rows * width + 4 * rows


def _layer_bytes(plan: MemoryPlan) -> int:
    """Saved-for-backward bytes of one block (see ``tools/tests/test_memory.py``)."""
    c = plan.config
    s = _sizes(plan)
    bt, d, q, kv, f = s["bt"], s["d"], s["q"], s["kv"], s["f"]
    a = 2 if plan.precision == "bf16" else 4  # matmul outputs (autocast: bf16)
    lin_in = 2 if plan.precision == "bf16" else 0  # autocast's bf16 copy of a linear's input
    x = 4 * bt * d  # fp32 residual-width tensor
    total = 0
    # attention: q, k, v projections; qk-norm keeps the raw projection and the norm's state
    if c.qk_norm != "none":
        rows_q = bt if c.qk_norm == "full" else bt * c.n_heads
        rows_k = bt if c.qk_norm == "full" else bt * c.kv_heads
        total += a * bt * (q + kv) + _norm_bytes(plan, rows_q, q // (rows_q // bt))
        total += _norm_bytes(plan, rows_k, kv // (rows_k // bt))
    total += a * bt * (2 * q + 2 * kv) + 4 * s["lse"]  # SDPA: q, k, v, output, logsumexp
    # FFN: gated eager keeps gate, up, act(gate), product; the SwiGLU kernel gate, up, product
    if c.gated:
        total += (3 if plan.kernels and c.activation == "swiglu" else 4) * a * bt * f
    else:
        total += (1 if c.activation == "relu" else 2) * a * bt * f
    # the two linears' inputs and the norms, by where the norm sits
    lin_inputs = 2 * (lin_in * bt * d if lin_in else x)
    if c.norm_position == "pre":  # x -> norm -> attn; x2 -> norm -> ffn
        total += 2 * x + 2 * _norm_bytes(plan, bt, d) + lin_inputs
    elif c.norm_position == "sublayer":  # linears read x, x2; norms read the sublayer outputs
        norm_in = 4 * bt * d  # a float copy of the bf16 sublayer output, or it in fp32
        total += lin_inputs + (x if lin_in else 0) * 2
        total += 2 * (norm_in + _norm_bytes(plan, bt, d))
    else:  # post: norm(x + f(x)); the next sublayer reads the norm's output
        total += 2 * (x + _norm_bytes(plan, bt, d)) + lin_inputs
    return total


def _base_bytes(plan: MemoryPlan) -> int:
    """Saved bytes outside the blocks: ids, labels, RoPE tables, final norm, head, loss."""
    c = plan.config
    s = _sizes(plan)
    bt, d = s["bt"], s["d"]
    total = 2 * 8 * bt  # input ids (embedding backward) and labels (the loss), int64
    if c.position == "rope":
        total += 2 * 4 * plan.seq_len * (c.rotary_dim // 2)  # cos, sin
    if c.position == "learned":
        total += 8 * plan.seq_len
    if c.position == "alibi":  # one (1, H, T, T) bias shared by every layer
        total += (2 if plan.precision == "bf16" else 4) * c.n_heads * plan.seq_len**2
    if c.norm_position != "post":
        total += 4 * bt * d + _norm_bytes(plan, bt, d)  # final norm: input, state
    head_in = 2 * bt * d if plan.precision == "bf16" else 4 * bt * d
    if plan.kernels and plan.precision == "bf16":  # fused linear CE: d(hidden), d(W) in forward
        total += 2 * bt * d + 4 * c.vocab_size * d
    else:
        total += head_in + 4 * bt * c.vocab_size  # log-softmax output of the fp32 logits
    return total


# Measured counterparts (tests and the CPU benchmark use them).


def saved_activation_bytes(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """Bytes that autograd keeps for backward in one forward of ``model`` on ``batch``.

    Every tensor saved for backward passes ``saved_tensors_hooks``; each storage is counted once
    (a tensor and its views, or one tensor saved by several ops, are one allocation) and the
    parameters are left out (they exist anyway). Storages are held until the count is done.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen.setdefault(ptr, storage)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch["input_ids"], labels=batch["labels"])
    del out
    return sum(s.nbytes() for s in seen.values())


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Exact bytes of parameters, gradients and optimizer state tensors (after a step)."""
    params = list(model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    states = [
        t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)
    ]
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    return {"params": nbytes(params), "gradients": nbytes(grads), "optimizer": nbytes(states)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preset", help="llm-model preset name")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--optimizer", choices=sorted(_OPTIMIZER_BYTES), default="adamw")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--fsdp", type=int, default=1, help="FSDP world size")
    p.add_argument("--kernels", action="store_true", help="count llm-kernels' saved tensors")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        plan = MemoryPlan(
            config=get_preset(args.preset),
            seq_len=args.seq_len,
            micro_batch=args.micro_batch,
            precision=args.precision,
            optimizer=args.optimizer,
            activation_checkpointing=args.activation_checkpointing,
            fsdp=args.fsdp,
            kernels=args.kernels,
        )
    except ValueError as e:
        parser.error(str(e))
    print(f"| {args.preset} | GiB |\n| --- | --- |")
    for label, gib in estimate(plan).rows():
        print(f"| {label} | {gib:,.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
