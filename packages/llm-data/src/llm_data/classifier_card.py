"""The card of a trained quality classifier: `<model>.card.json` beside the fastText `.bin`.

One module owns the card: its schema, writer (atomic), reader, validation, and the one loader of
the model, which refuses a model whose sha256 is not the card's. A fastText `.bin` is a binary
format parsed by fastText's C++ code, not a pickle: loading one runs no Python code from the file.
The hash check is still there so a filter never scores with a model other than the one whose
held-out metrics the card reports (a retrained, truncated or swapped file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_json, sha256_file

__all__ = [
    "CARD_SUFFIX",
    "CARD_VERSION",
    "NEGATIVE",
    "POSITIVE",
    "ClassifierError",
    "card_path",
    "load_classifier",
    "read_card",
    "verify_model",
    "write_card",
]

CARD_VERSION = 1
CARD_SUFFIX = ".card.json"
# fastText labels; a document's quality score is the probability of POSITIVE.
POSITIVE = "__label__positive"
NEGATIVE = "__label__negative"
_FIELDS = {
    "version": int,
    "model_file": str,
    "model_sha256": str,
    "model_bytes": int,
    "labels": dict,
    "sources": list,
    "counts": dict,
    "hyperparameters": dict,
    "metrics": dict,
}


class ClassifierError(ValueError):
    """A classifier model or card that cannot be used (missing, invalid, or not what the card
    describes); the message names the file."""


def card_path(model_path: str | os.PathLike) -> Path:
    """`model.bin` -> `model.card.json`."""
    path = Path(model_path)
    return path.with_name(path.stem + CARD_SUFFIX)


def write_card(model_path: Path, card: dict[str, Any]) -> Path:
    """Add the model file's name, size and sha256 to `card`, validate it, write it atomically."""
    card = {
        "version": CARD_VERSION,
        "model_file": model_path.name,
        "model_sha256": sha256_file(model_path),
        "model_bytes": model_path.stat().st_size,
        **card,
    }
    path = card_path(model_path)
    _validate(card, path)
    atomic_write_json(path, card)
    return path


def read_card(model_path: str | os.PathLike) -> dict[str, Any]:
    """The validated card of `model_path`.

    Raises:
        ClassifierError: the card is missing, not JSON, or lacks a field (named).
    """
    path = card_path(model_path)
    if not path.is_file():
        raise ClassifierError(
            f"{path}: no classifier card beside {model_path} (written by llm-data train-classifier)"
        )
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ClassifierError(f"{path}: not valid JSON: {err}") from err
    _validate(card, path)
    return card


def _validate(card: Any, path: Path) -> None:
    if not isinstance(card, dict):
        raise ClassifierError(f"{path}: expected a JSON object")
    for name, kind in _FIELDS.items():
        if not isinstance(card.get(name), kind):
            raise ClassifierError(f"{path}: field {name!r} missing or not a {kind.__name__}")
    if card["version"] != CARD_VERSION:
        raise ClassifierError(f"{path}: version {card['version']} (this llm-data reads 1)")
    if card["labels"].get("positive") != POSITIVE:
        raise ClassifierError(f"{path}: labels.positive must be {POSITIVE!r}")


def verify_model(model_path: str | os.PathLike) -> dict[str, Any]:
    """The card of `model_path`, after checking that the file is the one the card describes.

    Raises:
        ClassifierError: no model file, or its size or sha256 is not the card's.
    """
    model_path = Path(model_path)
    card = read_card(model_path)
    if not model_path.is_file():
        raise ClassifierError(f"{model_path}: classifier model file does not exist")
    size = model_path.stat().st_size
    digest = sha256_file(model_path) if size == card["model_bytes"] else None
    if digest != card["model_sha256"]:
        raise ClassifierError(
            f"{model_path}: sha256 (or size: {size} bytes, card {card['model_bytes']}) does not "
            f"match {card_path(model_path).name}; refusing a model the card does not describe"
        )
    return card


def load_classifier(model_path: str | os.PathLike):
    """The fastText model at `model_path` (extra `[classifier]`), verified against its card."""
    verify_model(model_path)
    try:
        from fasttext.FastText import _FastText
    except ImportError as err:
        raise ClassifierError(
            "the quality classifier needs fastText: pip install 'llm-data[classifier]'"
        ) from err
    # _FastText(path) rather than fasttext.load_model: the same model object without the
    # deprecation warning load_model prints on stderr.
    return _FastText(str(model_path))
