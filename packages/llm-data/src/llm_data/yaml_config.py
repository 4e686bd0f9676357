"""Build the typed configs from plain mappings (a YAML file), rejecting unknown keys by name.

Hand-written instead of OmegaConf: llm-data's core stays free of config libraries (the app uses
OmegaConf on the same dataclasses); this only walks dataclass fields, lists and nested configs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from llm_data.config import CurationConfig

__all__ = ["ConfigError", "from_mapping", "load_curation_config"]


class ConfigError(ValueError):
    """A config file that does not map onto the dataclasses (unknown key, wrong shape)."""


def _dataclass_in(hint) -> type | None:
    """The dataclass inside `hint` (`X`, `X | None`), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


def from_mapping(cls: type, data: object, where: str):
    """`cls(**data)`, recursing into nested dataclasses and lists of them.

    Raises:
        ConfigError: `data` is not a mapping, or has a key `cls` does not know (named with
            its path, e.g. `data.gopher.min_words`, and the keys allowed there).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]} (allowed in {where}: {', '.join(names)})"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _convert(hint, value, where: str):
    nested = _dataclass_in(hint)
    if nested is not None and value is not None:
        return from_mapping(nested, value, where)
    if typing.get_origin(hint) is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (object,)
        item_class = _dataclass_in(item)
        if item_class is not None:
            return [from_mapping(item_class, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_curation_config(path: Path | str) -> CurationConfig:
    """A `CurationConfig` from a YAML file whose top level holds its fields."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return from_mapping(CurationConfig, data if data is not None else {}, where=path.name)
