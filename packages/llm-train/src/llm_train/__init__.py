"""llm-train: a trainer for any module that meets the trainable-model protocol."""

from llm_train.callback import Callback
from llm_train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from llm_train.config import TrainConfig
from llm_train.metrics import MetricsWriter, read_metrics
from llm_train.optimizer import build_optimizer
from llm_train.parallel import apply_fsdp, parallelize
from llm_train.schedule import build_scheduler, lr_at
from llm_train.step import train_step
from llm_train.trainer import Trainer

__all__ = [
    "Callback",
    "MetricsWriter",
    "TrainConfig",
    "Trainer",
    "apply_fsdp",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_at",
    "parallelize",
    "read_metrics",
    "save_checkpoint",
    "train_step",
]
