"""Which device a run uses: the one rule behind every `device: auto` and `--device` default.

It works on strings and is told whether CUDA is there (``torch.cuda.is_available()`` at the
caller), so it needs no torch: the packages, the app, the tools and the benchmarks share it.
"""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(requested: str, *, cuda_available: bool, setting: str = "device") -> str:
    """``requested`` as a torch device string, with ``"auto"`` -> ``"cuda"`` if available, else
    ``"cpu"``.

    Any other value (``"cpu"``, ``"cuda:1"``, ``"mps"``) is returned as given, except a CUDA
    device asked for where there is none: that is an error naming ``setting``, raised here
    rather than at the first tensor moved to it.
    """
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested.split(":")[0] == "cuda" and not cuda_available:
        raise ValueError(
            f"{setting}={requested!r} but torch sees no CUDA device; use {setting}=cpu or auto"
        )
    return requested
