"""DCP checkpoint <-> Hugging Face directory (Llama, OLMo 2 or GPT-2, as the model config allows).

``dcp_to_hf`` streams: it reads the checkpoint's model tensors one at a time (``tools.convert.dcp``)
and writes them one at a time (``llm_model.hf.write_hf_checkpoint``), so its memory is about the
largest tensor, whatever the model size. The model config comes from the checkpoint's manifest
(``model_config``, written by the train stage and by ``hf_to_dcp``), so a checkpoint converts
wherever it lies; the tokenizer files and special-token ids from the checkpoint's or the run's
``tokenizer.json`` (or ``--tokenizer``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from llm_formats import checkpoint as formats
from llm_formats.tokenizer import hf_tokenizer_files, read_card, role_ids, special_token_roles
from llm_model import ModelConfig
from llm_model.hf import (
    TensorEntry,
    hf_config,
    hf_entries,
    import_hf,
    parse_size,
    pick_architecture,
    warn_or_refuse_lossy,
    write_hf_checkpoint,
)
from llm_train.checkpoint import latest_checkpoint, verify_checkpoint
from tools.convert.dcp import model_tensors

__all__ = ["dcp_to_hf", "find_checkpoint", "hf_to_dcp"]

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def find_checkpoint(source: str | os.PathLike, step: int | None = None) -> Path:
    """The checkpoint directory ``source`` names: itself, or the newest valid (or ``step``'s)
    one under ``source/checkpoints`` (a run directory) or ``source`` (a checkpoints folder)."""
    source = Path(source)
    if (source / ".metadata").is_file():
        if step is not None and source.name != formats.step_dir_name(step):
            raise ValueError(f"--step {step} given with checkpoint {source}: give one of them")
        chosen = source
    else:
        folder = source / "checkpoints" if (source / "checkpoints").is_dir() else source
        if step is not None:
            chosen = folder / formats.step_dir_name(step)
            if not chosen.is_dir():
                raise FileNotFoundError(f"no checkpoint {chosen}")
        else:
            chosen = latest_checkpoint(folder)
            if chosen is None:
                raise FileNotFoundError(f"no valid checkpoint under {folder}")
    if (chosen / formats.MANIFEST).is_file():
        reason = verify_checkpoint(chosen)
        if reason is not None:
            raise ValueError(f"checkpoint {chosen} is not usable: {reason}")
    return chosen


def _run_dir(checkpoint: Path) -> Path | None:
    run = checkpoint.parent.parent  # <run>/checkpoints/step_NNNNNN
    return run if (run / "config.yaml").is_file() else None


def _model_config(checkpoint: Path) -> tuple[ModelConfig, dict]:
    """(ModelConfig from the manifest, tokenizer settings) of ``checkpoint``. The tokenizer
    settings are the manifest's (``hf_to_dcp``), else the run config's ``tokenizer:`` section."""
    manifest = formats.read_manifest(checkpoint)
    fields = formats.manifest_model_config(manifest, checkpoint)
    config = _build(fields, checkpoint / formats.MANIFEST)
    if "tokenizer" in manifest:
        return config, manifest["tokenizer"]
    run = _run_dir(checkpoint)
    if run is None:
        return config, {}
    return config, (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("tokenizer") or {}


def _build(fields: dict, source: Path) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{source}: model fields {unknown} are not ModelConfig fields")
    try:
        return ModelConfig(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: invalid model config: {e}") from None


def _tokenizer_path(checkpoint: Path, given: str | os.PathLike | None) -> Path:
    candidates = [Path(given)] if given else [checkpoint / "tokenizer.json"]
    if not given:  # the run's: <run>/checkpoints/step_NNNNNN
        candidates.append(checkpoint.parent.parent / "tokenizer.json")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no tokenizer for {checkpoint}: looked for {', '.join(map(str, candidates))}; "
        "pass --tokenizer PATH"
    )


def _entries(checkpoint: Path, config: ModelConfig, arch: str, dtype) -> list[TensorEntry]:
    """The checkpoint's model tensors under their Llama names, checked against ``config``."""
    from llm_model import Transformer

    tensors = model_tensors(checkpoint)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Transformer(config).state_dict().items()}
    problems = [f"unexpected {k}" for k in sorted(set(tensors) - set(expected))]
    problems += [f"missing {k}" for k in sorted(set(expected) - set(tensors))]
    problems += [
        f"{k} has shape {tensors[k].shape}, the config gives {shape}"
        for k, shape in expected.items()
        if k in tensors and tensors[k].shape != shape
    ]
    if problems:
        raise ValueError(
            f"{checkpoint} does not match its model config ({len(problems)} problems): "
            + "; ".join(problems[:8])
        )
    ours = {k: TensorEntry(k, t.shape, t.dtype, t.load) for k, t in tensors.items()}
    return hf_entries(config, arch, ours, dtype)


def _counted(load, bar: tqdm):
    def counted_load() -> torch.Tensor:
        out = load()
        bar.update(1)
        return out

    return counted_load


def dcp_to_hf(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    step: int | None = None,
    shard_size: str | int = "5GB",
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    eos_token: str | None = None,
    strict: bool = False,
    arch: str = "auto",
) -> Path:
    """Convert a run's (or one) DCP checkpoint into a Hugging Face directory.

    Args:
        source: Run directory, its checkpoints folder, or one ``step_NNNNNN`` directory.
        out: Output directory (written atomically; replaced if it exists).
        step: Which step (default: the newest valid checkpoint).
        shard_size: Largest safetensors file.
        dtype: "float32", "bfloat16" or "float16" (default: as stored).
        tokenizer: tokenizer.json (default: the checkpoint's, else the run's).
        eos_token: EOS token (default: the one the tokenizer's card records; without a card,
            the run config's tokenizer.eos_token, else ``DEFAULT_EOS_TOKEN``).
        strict: Refuse, rather than warn, when the export changes outputs on some inputs.
        arch: "llama", "olmo2", "gpt2" or "auto" (the first that represents the model config).
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}")
    checkpoint = find_checkpoint(source, step)
    config, tok_section = _model_config(checkpoint)
    arch = pick_architecture(config, arch)
    warn_or_refuse_lossy(config, strict)
    tok_path = _tokenizer_path(checkpoint, tokenizer)
    roles = _special_token_roles(tok_path, tok_section, eos_token)
    files = hf_tokenizer_files(tok_path, config.max_seq_len, roles)
    ids = role_ids(tok_path, roles)
    target = DTYPES[dtype] if dtype else None
    entries = _entries(checkpoint, config, arch, target)
    with tqdm(total=len(entries), desc=f"{checkpoint.name} -> hf", unit="tensor") as bar:
        entries = [dataclasses.replace(e, load=_counted(e.load, bar)) for e in entries]
        cfg = hf_config(
            config, arch=arch, dtype=target or entries[0].dtype, bos_token_id=ids["eos"],
            eos_token_id=ids["eos"], pad_token_id=ids.get("pad"),
        )  # fmt: skip
        path = write_hf_checkpoint(
            out, cfg, entries, shard_size=parse_size(shard_size), extra_files=files
        )
    log.info("wrote %s from %s", path, checkpoint)
    return path


def _special_token_roles(tok_path: Path, tok_section: dict, eos_token: str | None) -> dict:
    """Role -> token: the card's; without a card (an imported model, a bare tokenizer.json) the
    run config's or manifest's ``eos_token``/``pad_token``; ``eos_token`` overrides both."""
    roles = special_token_roles(tok_path)
    if read_card(tok_path) is None:
        given = {"eos": tok_section.get("eos_token"), "pad": tok_section.get("pad_token")}
        roles |= {role: token for role, token in given.items() if token}
    return roles | ({"eos": eos_token} if eos_token else {})


def hf_to_dcp(source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Import a Hugging Face Llama directory (sharded or not) as a DCP checkpoint of our model.

    ``out`` becomes a checkpoint directory: DCP files of ``{"model": state_dict}``, the
    tokenizer.json if the source has one, and a manifest with ``model_config`` and sha256 per
    file. It loads into any FSDP layout with ``dcp.load({"model": model.state_dict()}, ...)``
    and converts back with ``dcp_to_hf``. It has no optimizer state, so training does not
    resume from it.
    """
    import torch.distributed.checkpoint as dcp

    source, out = Path(source), Path(out)
    model = import_hf(source)
    tmp = formats.tmp_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with warnings.catch_warnings():  # "torch.distributed is disabled": intended here
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save({"model": model.state_dict()}, checkpoint_id=tmp, no_dist=True)
        tokenizer = {}
        if (source / "tokenizer.json").is_file():
            shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
            tokenizer = _hf_special_tokens(source)
        manifest = {
            "step": 0, "source": str(source), "model_config": dataclasses.asdict(model.config),
            "tokenizer": tokenizer,
        }  # fmt: skip
        formats.write_manifest(tmp, manifest, formats.hash_files(tmp))
        formats.finalize(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _hf_special_tokens(source: Path) -> dict:
    """{"eos_token", "pad_token"} from a Hugging Face tokenizer_config.json (strings only)."""
    path = source / "tokenizer_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    out = {}
    for key in ("eos_token", "pad_token"):
        value = config.get(key)
        if isinstance(value, dict):  # an AddedToken written out
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    return out
