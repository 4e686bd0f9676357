"""llm-data: curation on datatrove, MDS token shards and a resumable loader.

Two halves: curation (the modules of `llm_data` itself; no torch) and `llm_data.training_data`
(shards, loader, mixtures). `tokenize_to_shards` and `build_loader` need the `[shards]` extra
and are imported lazily on first use.
"""

from llm_data.config import (
    ClassifierConfig,
    CurationConfig,
    DecontaminationConfig,
    DedupConfig,
    GopherConfig,
    RayConfig,
    ShardConfig,
    SlurmConfig,
    SourceConfig,
)
from llm_data.curation import run_curation
from llm_data.readers import InputError

__all__ = [
    "ClassifierConfig",
    "CurationConfig",
    "DecontaminationConfig",
    "DedupConfig",
    "GopherConfig",
    "InputError",
    "RayConfig",
    "ShardConfig",
    "SlurmConfig",
    "SourceConfig",
    "build_loader",
    "run_curation",
    "tokenize_to_shards",
]


def __getattr__(name: str):
    # Lazy: torch and streaming load only when the shards extra is actually used.
    if name == "tokenize_to_shards":
        from llm_data.training_data.shards import tokenize_to_shards

        return tokenize_to_shards
    if name == "build_loader":
        from llm_data.training_data.loader import build_loader

        return build_loader
    raise AttributeError(f"module 'llm_data' has no attribute {name!r}")
