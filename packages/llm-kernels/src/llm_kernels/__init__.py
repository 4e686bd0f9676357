"""llm-kernels: fused Triton kernels with pure-torch references.

Each function runs its Triton kernel when the input is on CUDA (or inside ``triton_on_cpu()``,
in Triton's interpreter) and the reference in :mod:`llm_kernels.reference` otherwise. The
kernels themselves live in :mod:`llm_kernels.ops`; under autocast they keep their own dtypes.
"""

from llm_kernels import modules, reference
from llm_kernels.dispatch import (
    apply_rope,
    fused_linear_cross_entropy,
    rms_norm,
    rms_norm_residual,
    swiglu,
    swiglu_fused,
    triton_on_cpu,
    use_triton,
)

__all__ = [
    "apply_rope",
    "fused_linear_cross_entropy",
    "modules",
    "reference",
    "rms_norm",
    "rms_norm_residual",
    "swiglu",
    "swiglu_fused",
    "triton_on_cpu",
    "use_triton",
]
