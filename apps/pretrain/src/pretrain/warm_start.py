"""``train.init_from``: which kind of directory it names, and the check of its model config.

Three kinds start a run (``llm_train.warm_start`` reads them, each rank its own shards):

- a checkpoint directory (``step_NNNNNN/`` with a manifest: another run's, or ``hf_to_dcp``'s);
- a run directory (or its ``checkpoints/``): its newest valid checkpoint;
- a Hugging Face Llama / OLMo 2 directory (``config.json`` + safetensors, as ``tools/convert``
  exports): read through torch's ``HuggingFaceStorageReader`` under the names of
  ``llm_model.hf.hf_name_map`` (the one HF <-> ours mapping; our RoPE layout is Hugging Face's,
  so q and k need no permutation).

The source's model config (the manifest's ``model_config``, or ``config.json`` translated by
``llm_model.hf.config_from_hf``) must agree with this run's on every field the weights depend on
(``llm_model.config.weight_fields``); the context length and RoPE settings may change. Every
differing field, a tokenizer other than the run's, and every tensor that does not fit are named
in one error.
"""

from __future__ import annotations

import json
from pathlib import Path

from llm_formats import checkpoint as formats
from llm_formats import rundir as layout
from llm_formats.atomic import sha256_file
from llm_train.warm_start import WarmStart, config_problems
from pretrain.rundir import RunError

HF_CONFIG = "config.json"


def resolve_init_from(config, run_dir: Path, model_config) -> WarmStart | None:
    """The ``WarmStart`` that ``train.init_from`` names (None when unset), checked for kind,
    validity and model config; ``model_config`` is this run's. Collective under torchrun."""
    given = config.train.init_from
    if not given:
        return None
    path = Path(given)
    if (path / formats.MANIFEST).is_file():
        return _from_checkpoint(config, run_dir, model_config, _verified(path))
    if (path / HF_CONFIG).is_file():
        return _from_hf(config, run_dir, model_config, path)
    folder = path / layout.CHECKPOINTS if (path / layout.CHECKPOINTS).is_dir() else path
    if folder.is_dir() and formats.step_dirs(folder):
        from llm_train.checkpoint import latest_checkpoint

        newest = latest_checkpoint(folder)  # collective: the ranks verify it together
        if newest is None:
            raise RunError(f"train.init_from={given}: no valid checkpoint under {folder}")
        return _from_checkpoint(config, run_dir, model_config, newest)
    raise RunError(
        f"train.init_from={given} is neither a checkpoint directory ({formats.MANIFEST}), a run "
        f"directory (checkpoints/step_NNNNNN) nor a Hugging Face directory ({HF_CONFIG} + "
        "safetensors)"
    )


def _verified(path: Path) -> Path:
    """``path`` if its files match its manifest. Collective under torchrun: each rank hashes
    its share of the files and every rank gets the same verdict."""
    from llm_train.checkpoint import verify_checkpoint

    reason = verify_checkpoint(path)
    if reason is not None:
        raise RunError(f"train.init_from={path} is not a usable checkpoint: {reason}")
    return path


def _from_checkpoint(config, run_dir: Path, ours, path: Path) -> WarmStart:
    from llm_model import ModelConfig

    manifest = formats.read_manifest(path)
    fields = formats.manifest_model_config(manifest, path)
    try:
        theirs = ModelConfig(**fields)
    except (TypeError, ValueError) as e:
        raise RunError(f"{path / formats.MANIFEST}: field 'model_config' is invalid: {e}") from None
    problems = _model_problems(ours, theirs)
    want, have = manifest.get("tokenizer_sha256"), _sha(run_dir / layout.TOKENIZER)
    if want and have and want != have:
        problems.append(
            f"tokenizer: the source was trained with tokenizer.json sha256 {want[:12]}..., this "
            f"run's is {have[:12]}... (the token ids would mean other tokens)"
        )
    record = {
        "path": str(path), "kind": "checkpoint", "step": manifest["step"],
        "manifest_sha256": sha256_file(path / formats.MANIFEST),
    }  # fmt: skip
    return WarmStart(
        path, record=record, optimizer=config.train.init_optimizer, problems=tuple(problems)
    )


def _from_hf(config, run_dir: Path, ours, path: Path) -> WarmStart:
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    from llm_model import Transformer
    from llm_model.hf import config_from_hf, hf_name_map

    hf = json.loads((path / HF_CONFIG).read_text())
    try:
        theirs = config_from_hf(hf, str(path / HF_CONFIG))
    except (KeyError, ValueError) as e:
        raise RunError(f"train.init_from={path}: {e}") from None
    problems = _model_problems(ours, theirs) + _hf_tokenizer_problems(run_dir, path)
    if config.train.init_optimizer:
        problems.append("train.init_optimizer: a Hugging Face directory holds no optimizer state")
    import torch

    with torch.device("meta"):
        keys = Transformer(ours).state_dict().keys()
    names = {k: v for k, v in hf_name_map(ours, hf["model_type"]).items() if k in keys}
    record = {"path": str(path), "kind": "hf", "config_sha256": sha256_file(path / HF_CONFIG)}
    return WarmStart(
        path, record=record, names=names, storage_reader=lambda p: HuggingFaceStorageReader(str(p)),
        problems=tuple(problems),
    )  # fmt: skip


def _model_problems(ours, theirs) -> list[str]:
    from llm_model.config import weight_fields

    return config_problems(weight_fields(ours), weight_fields(theirs))


def _hf_tokenizer_problems(run_dir: Path, path: Path) -> list[str]:
    """A Hugging Face export rewrites tokenizer.json's post-processor, so compare what names the
    ids: the vocabulary and merges."""
    theirs, ours = path / layout.TOKENIZER, run_dir / layout.TOKENIZER
    if not (theirs.is_file() and ours.is_file()):
        return []
    a, b = (json.loads(p.read_text()).get("model", {}) for p in (theirs, ours))
    if (a.get("vocab"), a.get("merges")) == (b.get("vocab"), b.get("merges")):
        return []
    return [f"tokenizer: {theirs} has another vocabulary or merges than {ours}"]


def _sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None
