"""Peak FLOP/s of known accelerators, so that MFU can be logged without the user looking it up.

Standard library only: ``tools/cost.py`` reads this file directly (the one table of peaks).
"""

from __future__ import annotations

__all__ = ["PEAK_FLOPS", "peak_flops_for_device"]

# Dense bf16 tensor-core peak per GPU (no 2:4 sparsity), from the vendor data sheets.
PEAK_FLOPS: dict[str, float] = {
    "h100": 989e12,  # H100 SXM
    "h100-pcie": 756e12,
    "h200": 989e12,
    "a100": 312e12,
}


def peak_flops_for_device(name: str) -> float:
    """Peak FLOP/s for a name such as ``torch.cuda.get_device_name()``; 0.0 when unknown.

    0.0 (a CPU, an unlisted GPU) is what ``TrainConfig.peak_flops`` reads as "no MFU".
    """
    key = name.lower()
    for gpu in ("h200", "a100"):
        if gpu in key:
            return PEAK_FLOPS[gpu]
    if "h100" in key:
        return PEAK_FLOPS["h100-pcie" if "pcie" in key else "h100"]
    return 0.0
