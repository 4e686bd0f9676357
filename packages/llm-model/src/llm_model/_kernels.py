"""Optional llm-kernels: imported once, used only on CUDA tensors when the config allows it."""

from __future__ import annotations

import torch

try:  # llm-kernels is the optional [kernels] extra
    import llm_kernels
except ImportError:  # pragma: no cover - depends on the environment
    llm_kernels = None


def available(enabled: bool, *tensors: torch.Tensor) -> bool:
    """True when llm-kernels is importable, enabled, and every tensor is on CUDA."""
    return enabled and llm_kernels is not None and all(t.is_cuda for t in tensors)
