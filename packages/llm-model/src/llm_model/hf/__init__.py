"""Hugging Face checkpoints: export as Llama, OLMo 2 or GPT-2 (sharded safetensors); import.

Needs the [hf] extra (safetensors). One module per job:

- ``architectures``: what each architecture needs of a ModelConfig, and what an export loses;
- ``config``: ModelConfig <-> config.json (``hf_config``, ``config_from_hf``);
- ``weights``: our tensor names -> Hugging Face names, lazily (``hf_entries``);
- ``writer``: the streaming, sharded, atomic directory writer (``write_hf_checkpoint``);
- ``export`` / ``importer``: ``export_hf`` for an in-memory model, ``import_hf``.
"""

from llm_model.hf.architectures import (
    ARCHITECTURES,
    IMPORTABLE,
    HFExportWarning,
    check_llama_compatible,
    incompatibilities,
    llama_incompatibilities,
    lossy_fields,
    pick_architecture,
    warn_or_refuse_lossy,
)
from llm_model.hf.config import config_from_hf, hf_config
from llm_model.hf.export import export_hf
from llm_model.hf.importer import import_hf
from llm_model.hf.weights import TensorEntry, hf_entries, hf_name_map
from llm_model.hf.writer import DEFAULT_SHARD_SIZE, INDEX, parse_size, write_hf_checkpoint

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_SHARD_SIZE",
    "HFExportWarning",
    "IMPORTABLE",
    "INDEX",
    "TensorEntry",
    "check_llama_compatible",
    "config_from_hf",
    "export_hf",
    "hf_config",
    "hf_entries",
    "hf_name_map",
    "import_hf",
    "incompatibilities",
    "llama_incompatibilities",
    "lossy_fields",
    "parse_size",
    "pick_architecture",
    "warn_or_refuse_lossy",
    "write_hf_checkpoint",
]
