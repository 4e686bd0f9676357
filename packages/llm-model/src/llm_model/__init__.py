"""llm-model: a readable decoder-only transformer whose config selects every ablation."""

from llm_model.attention import KVCache
from llm_model.config import ModelConfig
from llm_model.transformer import IGNORE_INDEX, Transformer

__all__ = ["ModelConfig", "Transformer", "KVCache", "PRESETS", "get_preset", "IGNORE_INDEX"]


def __getattr__(name: str):
    # presets is imported lazily so that `python -m llm_model.presets` runs it only once
    if name in ("PRESETS", "get_preset"):
        from llm_model import presets

        return getattr(presets, name)
    raise AttributeError(f"module 'llm_model' has no attribute {name!r}")
