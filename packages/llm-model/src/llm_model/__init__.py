"""llm-model: a readable decoder-only transformer whose config selects every ablation."""

from llm_model.attention import KVCache
from llm_model.config import ModelConfig
from llm_model.presets import PRESETS, get_preset
from llm_model.transformer import IGNORE_INDEX, Transformer

__all__ = ["ModelConfig", "Transformer", "KVCache", "PRESETS", "get_preset", "IGNORE_INDEX"]
