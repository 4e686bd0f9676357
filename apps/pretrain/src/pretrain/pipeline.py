"""Run the stages in order inside one run directory, make-style.

Each stage records, in `stages.json`, a hash of the config sections it depends on. A stage whose
record matches the current config (and whose upstream stages are up to date) is skipped, so a
second `pretrain` resumes where the first stopped; a changed section re-runs that stage and the
ones after it. Each stage writes its outputs atomically, and a fresh run directory that fails
before any stage finished is removed, so `runs/` never holds half-written results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pretrain import stages
from pretrain.config import PretrainConfig
from pretrain.loading import as_dict, to_yaml

log = logging.getLogger(__name__)

# stage -> (function, config sections it reads; upstream sections are added below)
_STAGES: dict[str, tuple[Callable[[PretrainConfig, Path], dict[str, Any]], tuple[str, ...]]] = {
    "curate": (stages.curate, ("data",)),
    "tokenizer": (stages.tokenizer, ("tokenizer",)),
    "shards": (stages.shards, ("shards",)),
    "train": (stages.train, ("loader", "model_preset", "model", "train", "run.device")),
    "eval": (stages.evaluate, ("eval",)),
    "report": (stages.report, ()),
}
STAGES = tuple(_STAGES)


def run_pipeline(config: PretrainConfig, names: list[str]) -> Path:
    """Run `names` (in pipeline order) for `config`; return the run directory."""
    stages.check_inputs(config, names)
    run_dir = Path(config.run.root) / config.run.name
    fresh = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _write_atomic(run_dir / "config.yaml", to_yaml(config))
        for name in names:
            _run_stage(name, config, run_dir, forced=len(names) == 1)
    except BaseException:
        if fresh and not _read_records(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            log.error("removed %s: no stage finished", run_dir)
        raise
    return run_dir


def _run_stage(name: str, config: PretrainConfig, run_dir: Path, *, forced: bool) -> None:
    records = _read_records(run_dir)
    digest = stage_hash(config, name)
    if not forced and name != "report" and records.get(name, {}).get("hash") == digest:
        log.info("stage %s: up to date, skipped (delete %s to redo it)", name, run_dir)
        return
    log.info("stage %s: running", name)
    start = time.perf_counter()
    summary = _STAGES[name][0](config, run_dir)
    records = _read_records(run_dir)
    for later in STAGES[STAGES.index(name) + 1 :]:  # downstream results are now stale
        records.pop(later, None)
    records[name] = {**summary, "hash": digest, "seconds": round(time.perf_counter() - start, 2)}
    _write_atomic(run_dir / "stages.json", json.dumps(records, indent=2))


def stage_hash(config: PretrainConfig, name: str) -> str:
    """Hash of every config section this stage and its upstream stages read."""
    tree = as_dict(config)
    keys = [key for stage in STAGES[: STAGES.index(name) + 1] for key in _STAGES[stage][1]]
    picked = {key: _lookup(tree, key) for key in keys}
    return hashlib.sha256(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _read_records(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "stages.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
