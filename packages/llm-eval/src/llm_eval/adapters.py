"""How the CLI gets a model: ``hf:<path>`` or ``<module>:<function>`` returning a LoadedModel.

llm-eval may not import the model or tokenizer packages, so our own checkpoints come through an
import path that the app provides (``pretrain.stages:eval_model``) and the CLI calls.
"""

from __future__ import annotations

import importlib

from llm_eval.protocols import LoadedModel

__all__ = ["LoadedModel", "load_model"]  # LoadedModel lives in protocols (hf.py needs it too)


def load_model(spec: str, arg: str | None = None, device: str = "cpu") -> LoadedModel:
    """``hf:<path>`` (needs the [hf] extra) or ``<module>:<function>``, called as
    ``function(arg, device=device)`` and returning a `LoadedModel`."""
    if spec.startswith("hf:"):
        from llm_eval.hf import load_hf

        return load_hf(spec.removeprefix("hf:"), device=device)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--model {spec!r}: expected hf:<path> or <module>:<function>")
    loader = getattr(importlib.import_module(module_name), attr, None)
    if loader is None:
        raise ValueError(f"--model {spec!r}: module {module_name} has no {attr!r}")
    loaded = loader(arg, device=device)
    if not isinstance(loaded, LoadedModel):
        raise TypeError(f"--model {spec!r} returned {type(loaded).__name__}, not a LoadedModel")
    return loaded
