"""RNG state as JSON-able data, so checkpoints restore dropout and sampling exactly."""

from __future__ import annotations

import base64
import random

import torch

__all__ = ["get_rng_state", "set_rng_state"]


def _encode(state: torch.Tensor) -> str:
    return base64.b64encode(bytes(state.tolist())).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    return torch.tensor(list(base64.b64decode(text)), dtype=torch.uint8)


def get_rng_state() -> dict:
    """Python, torch CPU and (if present) CUDA RNG states of this process."""
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss], "torch": _encode(torch.get_rng_state())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(_decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_decode(s) for s in state["cuda"]])
