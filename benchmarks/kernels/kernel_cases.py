"""Benchmark cases: bf16 inputs, the providers to time, and a float64 reference, per op and shape.

The llm_kernels provider calls the Triton functions in ``llm_kernels.ops`` directly (the public
functions dispatch to the same code on CUDA, but to the torch reference on CPU): that way a CPU
smoke run under ``TRITON_INTERPRET=1`` checks the kernels themselves. Import this module's
builders only after ``TRITON_INTERPRET`` is decided: they import llm_kernels lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

log = logging.getLogger("bench_kernels")
DTYPE = torch.bfloat16
E = 2  # bytes per bf16 element
EPS = 1e-6

FULL_SHAPES = {
    "rms_norm": [(4096, 2048), (16384, 4096), (32768, 8192)],
    "swiglu": [(16384, 11008), (32768, 14336)],
    "rope": [(8, 2048, 32, 128)],  # B, T, H, D
    "linear_ce": [(16384, 4096, 128256)],  # tokens, hidden, vocab
}
# Odd widths exercise the masked tails; few rows because Triton's CPU interpreter costs about
# 5 ms per row and call (8 rows on the interpreter's 4 programs still loop in persistent kernels).
SMOKE_SHAPES = {
    "rms_norm": [(8, 96)],
    "swiglu": [(8, 80)],
    "rope": [(1, 8, 2, 32)],
    "linear_ce": [(8, 32, 500)],
}
OPS = tuple(FULL_SHAPES)


@dataclass
class Case:
    """One op at one shape: every provider maps the same ``inputs`` to the same outputs."""

    op: str
    shape: str
    inputs: list[torch.Tensor]  # floating inputs get requires_grad for fwd+bwd
    providers: dict[str, Callable]
    reference: Callable  # float64 eager maths; called on the inputs cast to float64
    bytes_fwd: float | None
    bytes_fwd_bwd: float | None
    flops: tuple[float, float] | None = None  # (fwd, fwd+bwd)
    # provider -> indices of inputs it gives no gradient (a module's own copy of the weight)
    no_grad: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _liger(name: str):
    """A Liger-Kernel class or function, or None when it is not installed or fails to import."""
    try:
        if name in ("rms_norm", "rms_norm_residual"):
            from liger_kernel.transformers import LigerFusedAddRMSNorm, LigerRMSNorm

            return LigerRMSNorm if name == "rms_norm" else LigerFusedAddRMSNorm
        if name == "swiglu":
            from liger_kernel.ops.swiglu import LigerSiLUMulFunction

            return LigerSiLUMulFunction.apply
        if name == "rope":
            from liger_kernel.transformers import liger_rotary_pos_emb

            return liger_rotary_pos_emb
        if name == "linear_ce":
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            return LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    except Exception as err:  # an installed Liger that does not match this torch/triton
        log.warning("liger-kernel is installed but %s failed to import: %s", name, err)
        return None
    return None


def _liger_norm(cls, w: torch.Tensor):
    """Liger's norm module holding a copy of ``w``, so its output is comparable to the others."""
    mod = cls(w.shape[0], eps=EPS).to(w.device, w.dtype)
    with torch.no_grad():
        mod.weight.copy_(w)
    return mod


def _eager_rms(x, w):  # Hugging Face Llama's RMSNorm
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype)


def _eager_rms_residual(x, r, w):
    s = x + r
    return _eager_rms(s, w), s


def _add_compile(providers: dict, eager: Callable, compile_: bool) -> None:
    if compile_:  # static shapes: one graph per case (main resets dynamo between cases)
        providers["torch.compile"] = torch.compile(eager, dynamic=False)


def rms_cases(shapes, device: torch.device, compile_: bool) -> list[Case]:
    from llm_kernels import reference
    from llm_kernels.ops.rms_norm import rms_norm_residual_triton, rms_norm_triton

    cases = []
    for m, n in shapes:
        x, r = (torch.randn(m, n, device=device).to(DTYPE) for _ in range(2))
        w = torch.rand(n, device=device).to(DTYPE)
        providers = {
            "llm_kernels": lambda x, w: rms_norm_triton(x, w, EPS),
            "eager": _eager_rms,
            "F.rms_norm": lambda x, w: F.rms_norm(x, (x.shape[-1],), w, EPS),
        }
        _add_compile(providers, _eager_rms, compile_)
        no_grad = {}
        if (cls := _liger("rms_norm")) is not None:
            norm = _liger_norm(cls, w)
            providers["liger"] = lambda x, w, norm=norm: norm(x)
            no_grad["liger"] = (1,)
        ref = lambda x, w: reference.rms_norm(x, w, EPS)  # noqa: E731
        cases.append(Case("rms_norm", f"{m}x{n}", [x, w], providers, ref, 2 * m * n * E,
                          5 * m * n * E, no_grad=no_grad))  # fmt: skip

        res = {"llm_kernels": lambda x, r, w: rms_norm_residual_triton(x, r, w, EPS),
               "eager": _eager_rms_residual}  # fmt: skip
        _add_compile(res, _eager_rms_residual, compile_)
        no_grad = {}
        if (cls := _liger("rms_norm_residual")) is not None:
            norm = _liger_norm(cls, w)
            res["liger"] = lambda x, r, w, norm=norm: norm(x, r)
            no_grad["liger"] = (2,)
        ref = lambda x, r, w: reference.rms_norm_residual(x, r, w, EPS)  # noqa: E731
        cases.append(Case("rms_norm_residual", f"{m}x{n}", [x, r, w], res, ref, 4 * m * n * E,
                          8 * m * n * E, no_grad=no_grad))  # fmt: skip
    return cases


def _eager_swiglu(g, u):
    return F.silu(g) * u


def swiglu_cases(shapes, device: torch.device, compile_: bool) -> list[Case]:
    from llm_kernels import reference
    from llm_kernels.ops.swiglu import swiglu_triton

    cases = []
    for m, n in shapes:
        g, u = (torch.randn(m, n, device=device).to(DTYPE) for _ in range(2))
        providers = {"llm_kernels": swiglu_triton, "eager": _eager_swiglu}
        _add_compile(providers, _eager_swiglu, compile_)
        if (liger := _liger("swiglu")) is not None:
            providers["liger"] = liger
        cases.append(Case("swiglu", f"{m}x{n}", [g, u], providers, reference.swiglu,
                          3 * m * n * E, 8 * m * n * E))  # fmt: skip
    return cases


def rope_cases(shapes, device: torch.device, compile_: bool) -> list[Case]:
    from llm_kernels import reference
    from llm_kernels.ops.rope import apply_rope_triton

    cases = []
    for b, t, h, d in shapes:
        q, k = (torch.randn(b, t, h, d, device=device).to(DTYPE) for _ in range(2))
        inv = 10000.0 ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)
        ang = torch.arange(t, device=device, dtype=torch.float32)[:, None] * inv[None]
        cos, sin = ang.cos(), ang.sin()  # (T, D/2) float32 tables, no gradient

        def eager(q, k, cos=cos, sin=sin):
            return reference.apply_rope(q, k, cos, sin)

        providers = {
            "llm_kernels": lambda q, k, cos=cos, sin=sin: apply_rope_triton(q, k, cos, sin),
            "eager": eager,
        }
        _add_compile(providers, eager, compile_)
        if (liger_fn := _liger("rope")) is not None:
            # Liger wants (B, H, T, D) views and full-width (1, T, D) tables; its outputs are
            # viewed back as (B, T, H, D) (no copy) so they compare with the others.
            cos2, sin2 = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]

            def liger(q, k, cos2=cos2, sin2=sin2):
                qo, ko = liger_fn(q.transpose(1, 2), k.transpose(1, 2), cos2, sin2)
                return qo.transpose(1, 2), ko.transpose(1, 2)

            providers["liger"] = liger

        def ref(q, k, cos=cos, sin=sin):
            return reference.apply_rope(q, k, cos.double(), sin.double())

        qk_bytes = (q.numel() + k.numel()) * E
        cases.append(Case("rope", f"{b}x{t}x{h}x{d}", [q, k], providers, ref, 2 * qk_bytes,
                          4 * qk_bytes))  # fmt: skip
    return cases


def _ce_reference(labels: torch.Tensor, chunk: int) -> Callable:
    """Float64 mean cross-entropy of ``h @ w.T``, ``chunk`` rows at a time.

    Checkpointed chunks keep the float64 logits of one chunk alive at a time (the full
    16384 x 128256 float64 logits would be 17 GB, and autograd would keep several copies).
    """

    def chunk_loss(h, w, y):
        return F.cross_entropy(h @ w.T, y, reduction="sum")

    def ref(h, w):
        total = sum(
            checkpoint(chunk_loss, h[s : s + chunk], w, labels[s : s + chunk], use_reentrant=False)
            for s in range(0, h.shape[0], chunk)
        )
        return total / h.shape[0]

    return ref


def ce_cases(shapes, device: torch.device, compile_: bool) -> list[Case]:
    from llm_kernels.ops.linear_cross_entropy import fused_linear_cross_entropy_triton

    cases = []
    for n, d, v in shapes:
        h = torch.randn(n, d, device=device).to(DTYPE)
        w = (0.02 * torch.randn(v, d, device=device)).to(DTYPE)
        labels = torch.randint(0, v, (n,), device=device)

        def eager(h, w, labels=labels):
            return F.cross_entropy((h @ w.T).float(), labels)

        providers = {
            "llm_kernels": lambda h, w, y=labels: fused_linear_cross_entropy_triton(h, w, y)[0],
            "eager": eager,
        }
        _add_compile(providers, eager, compile_)
        if (liger := _liger("linear_ce")) is not None:
            loss = liger()  # note Liger's argument order: (weight, hidden, labels)
            providers["liger"] = lambda h, w, y=labels, loss=loss: loss(w, h, y)
        flops = 2.0 * n * d * v
        chunk = max(1, 2**27 // v)  # 1 GiB of float64 logits per chunk
        ref = _ce_reference(labels, chunk)
        cases.append(Case("linear_ce", f"{n}x{d}x{v}", [h, w], providers, ref, None, None,
                          (flops, 3 * flops)))  # fmt: skip
    return cases


BUILDERS = {"rms_norm": rms_cases, "swiglu": swiglu_cases, "rope": rope_cases,
            "linear_ce": ce_cases}  # fmt: skip
