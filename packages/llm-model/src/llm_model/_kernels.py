"""Optional llm-kernels: imported once, used only on CUDA tensors when the config allows it."""

from __future__ import annotations

import torch

try:  # llm-kernels is the optional [kernels] extra
    import llm_kernels
except ImportError:  # pragma: no cover - depends on the environment
    llm_kernels = None


def available(enabled: bool, *tensors: torch.Tensor) -> bool:
    """True when llm-kernels is importable, enabled, and runs Triton for every tensor (CUDA, or
    CPU inside ``llm_kernels.triton_on_cpu()``, which tests use with Triton's interpreter)."""
    return enabled and llm_kernels is not None and all(llm_kernels.use_triton(t) for t in tensors)
