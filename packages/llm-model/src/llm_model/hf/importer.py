"""Import a Hugging Face Llama or OLMo 2 checkpoint directory as a Transformer.

Every tensor must have a place in our model and every parameter a tensor: loading with one
missing or ignored would give a model that silently computes something else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from llm_model.hf.config import config_from_hf
from llm_model.hf.weights import hf_name_map
from llm_model.hf.writer import INDEX
from llm_model.transformer import Transformer

__all__ = ["import_hf"]


def import_hf(path: str | os.PathLike, **overrides) -> Transformer:
    """Load a Llama or OLMo 2 checkpoint directory (one safetensors file or sharded).

    Args:
        path: Directory written by ``export_hf`` or a Hugging Face Llama / OLMo 2 checkpoint.
        **overrides: ModelConfig fields to set on top (e.g. kernels=False).
    """
    path = Path(path)
    config_file = path / "config.json"
    config_json = json.loads(config_file.read_text())
    config = config_from_hf(config_json, str(config_file), **overrides)
    ours = {v: k for k, v in hf_name_map(config, config_json["model_type"]).items()}
    files = _weight_files(path)
    unknown = sorted(k for k in files if k not in ours and not k.endswith("rotary_emb.inv_freq"))
    if unknown:  # weights our model has no place for: loading without them would be wrong
        raise ValueError(f"{path}: tensors with no place in the model: {unknown[:5]}")
    with torch.device("meta"):
        model = Transformer(config)
    state = dict((ours[k], v) for k, v in _read_tensors(files, set(ours)))
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{path}: no weights for {sorted(missing)[:5]} ({len(missing)} missing)")
    model.load_state_dict(state, assign=True)
    return model


def _weight_files(path: Path) -> dict[str, Path]:
    """Hugging Face name -> safetensors file, from the index if there is one."""
    index = path / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: path / file for name, file in weight_map.items()}
    single = path / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{path} has neither {INDEX} nor model.safetensors")
    from safetensors import safe_open

    with safe_open(single, "pt") as f:
        return dict.fromkeys(f.keys(), single)


def _read_tensors(files: dict[str, Path], wanted: set[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every wanted name, one file open at a time."""
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for name, file in files.items():
        if name in wanted:
            by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with safe_open(file, "pt") as f:
            for name in names:
                yield name, f.get_tensor(name)
