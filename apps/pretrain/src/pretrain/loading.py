"""Load a YAML file plus `key.sub=value` overrides into typed config dataclasses.

OmegaConf structured configs do the work: the dataclass is the schema, so unknown keys and values
of the wrong type are errors that name the key; `__post_init__` validation of each package's config
runs when the merged tree is turned back into dataclasses.

YAML files are read strictly: a key given twice in one mapping is an error naming it and both
lines (PyYAML keeps the last silently: a second ``train:`` block reset every setting of the
first), and an OmegaConf interpolation (``${oc.env:TOKEN}``, ``${other.key}``) in a file is an
error unless the caller allows it (``pretrain --allow-env``): a downloaded config must not copy
environment variables (secrets) into config values, and so into the ``config.yaml`` a run records.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the source and the key."""


_INTERPOLATION = re.compile(r"(?<!\\)\$\{")  # OmegaConf's ``${...}``; ``\${`` is a literal


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping and, unless
    ``allow_interpolation``, any string holding an OmegaConf ``${...}`` interpolation."""

    allow_interpolation = False

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                continue  # SafeLoader's own error follows
            if key in seen:
                raise ConfigError(
                    f"line {line}: key {key!r} is given twice in one mapping (first on line "
                    f"{seen[key]}); the second would silently replace the first"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:
        value = super().construct_scalar(node)
        if not self.allow_interpolation and isinstance(value, str) and _INTERPOLATION.search(value):
            raise ConfigError(
                f"line {node.start_mark.line + 1}: {value!r} is an OmegaConf interpolation; "
                "config files may not read environment variables or other keys (secrets would "
                "land in config.yaml): write the value, or pass --allow-env"
            )
        return value


class _InterpolatingLoader(_StrictLoader):
    allow_interpolation = True


def strict_yaml(text: str, *, allow_interpolation: bool = False) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (and interpolations, unless allowed);
    errors are ``ConfigError`` naming the line, for the caller to prefix with the source."""
    loader = _InterpolatingLoader if allow_interpolation else _StrictLoader
    return yaml.load(text, Loader=loader)  # a SafeLoader subclass: no Python objects


def read_yaml(path: str | Path, *, allow_interpolation: bool = False) -> dict[str, Any]:
    """Read a YAML mapping strictly (``strict_yaml``), with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = strict_yaml(path.read_text(), allow_interpolation=allow_interpolation) or {}
    except ConfigError as e:
        raise ConfigError(f"config file {path}, {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top, not {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key.sub=value`; the value is parsed as YAML (so 1e-3, true, [a, b] work)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    try:  # the command line is the user's own: interpolations there are asked for
        value = strict_yaml(raw, allow_interpolation=True) if raw else ""
    except ConfigError as e:
        raise ConfigError(f"override {text!r}: {e}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def merge_into(schema: T, layers: list[tuple[str, dict[str, Any]]]) -> T:
    """Lay mappings (each with a name for errors) over a dataclass instance, its defaults.

    Sections merge key by key, so a layer changes only the keys it names; a list or a mapping
    setting it names (``loader.proportions``, ``eval.bpb_sets``) is replaced whole.
    """
    node = OmegaConf.structured(schema)
    for source, mapping in layers:
        try:
            node.merge_with(OmegaConf.create(mapping))
            _replace_mappings(node, mapping)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{source}: {_first_line(e)} (key {_full_key(e)!r})") from None
    return to_dataclass(node)


def _replace_mappings(node: DictConfig, mapping: dict[str, Any]) -> None:
    """Give each plain-dict setting named in ``mapping`` exactly ``mapping``'s entries: merged,
    ``proportions: {web: 1}`` over the default ``{web, books, code}`` would keep the other two."""
    for key, value in mapping.items():
        child = node.get(key)
        if not isinstance(child, DictConfig) or not isinstance(value, dict):
            continue
        if OmegaConf.get_type(child) is dict:
            OmegaConf.update(node, key, value, merge=False)
        else:  # a nested config section: its own keys merge
            _replace_mappings(child, value)


def to_dataclass(node: DictConfig) -> Any:
    """Turn the merged tree into dataclasses; `__post_init__` validation errors surface here."""
    try:
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid config: {_first_line(e)} (key {_full_key(e)!r})") from None
    except (ValueError, TypeError) as e:  # a package's __post_init__ rejected a value
        raise ConfigError(f"invalid config: {e}") from None


def to_yaml(config: Any) -> str:
    """The resolved config as YAML (what every run directory records)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _dump(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _full_key(e: Exception) -> str:
    return getattr(e, "full_key", None) or "?"
