"""The layout of a run directory, ``<run.root>/<run.name>/``: every path in it, named once.

The file names that belong to a seam come from that seam's module (``tokenizer``, ``shards``,
``heldout``, ``metrics``, ``eval_results``); this module places them in the run directory.
Each name is a path relative to the run directory, as a POSIX string, joined as
``run_dir / rundir.TOKENIZER`` (a nested one, ``rundir.HELDOUT``, joins the same way) and usable
in globs and record keys. The app (``apps/pretrain``) writes and reads these; tools and
benchmarks that open a run use the same names instead of spelling them again.
"""

from __future__ import annotations

import os
from pathlib import Path

from llm_formats.eval_results import RESULTS_FILE
from llm_formats.heldout import HELDOUT_FILE
from llm_formats.metrics import METRICS_FILE
from llm_formats.shards import SHARD_STATS_FILE
from llm_formats.tokenizer import CARD_FILE, TOKENIZER_FILE

__all__ = [
    "CHECKPOINTS", "CONFIG", "CURATED", "EVAL_DIR", "EVAL_RESULTS",
    "EVAL_SUMMARY", "HELDOUT", "LOCK", "LOSS_PLOT", "METRICS", "REPORT", "RUN_INFO", "SHARDS",
    "SHARD_STATS", "SLURM_LOG", "SLURM_SCRIPT", "SPIKES", "STAGES", "TENSORBOARD", "TOKENIZER",
    "TOKENIZER_CARD", "TRAINING_RECORD", "run_dir",
]  # fmt: skip

CONFIG = "config.yaml"  # the resolved config of the last run of a stage other than report
STAGES = "stages.json"  # per stage: its summary, config hash and seconds
LOCK = "pretrain.lock"  # who holds the run (flock; see pretrain.rundir)

CURATED = "curated"  # curated/<source>/<rank>.jsonl.gz (llm_data.run_curation)
TOKENIZER = TOKENIZER_FILE
TOKENIZER_CARD = CARD_FILE
SHARDS = "shards"  # shards/<source>/ MDS streams (llm_data.tokenize_to_shards)
SHARD_STATS = f"{SHARDS}/{SHARD_STATS_FILE}"
HELDOUT = f"{SHARDS}/{HELDOUT_FILE}"  # raw held-out documents, for bits per byte

CHECKPOINTS = "checkpoints"  # checkpoints/step_NNNNNN/ (llm_train.checkpoint)
TRAINING_RECORD = f"{CHECKPOINTS}/config.json"  # what the checkpoints were trained with
METRICS = METRICS_FILE  # the source of truth for training metrics
SPIKES = "spikes.jsonl"
TENSORBOARD = "tensorboard"  # the metrics' TensorBoard mirror
RUN_INFO = "run.json"  # versions, device, git revision
LOSS_PLOT = "loss.png"

EVAL_SUMMARY = "eval.json"  # the eval stage's metrics and the step it scored
EVAL_DIR = "eval"  # eval/<task>.jsonl per-item records (llm_eval.run_suite)
EVAL_RESULTS = f"{EVAL_DIR}/{RESULTS_FILE}"
REPORT = "report.md"

SLURM_SCRIPT = "train.sbatch"  # `pretrain launch-slurm`
SLURM_LOG = "slurm-%j.out"  # sbatch --output, %j the job id


def run_dir(root: str | os.PathLike, name: str) -> Path:
    """The run directory of run ``name`` under ``root`` (``run.root``, ``run.name``)."""
    return Path(root) / name
