"""A toy training run for the signal tests: ``python stop_run.py RUN_DIR STEPS [SLEEP_S]``.

Run directly (one process) or under ``torchrun`` (gloo, FSDP2 over the CPU ranks). Each step
sleeps ``SLEEP_S`` in a callback so a signal lands mid-run on any machine; sleeping changes no
arithmetic. Not collected by pytest (no ``test_`` prefix).
"""

import importlib.util
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from llm_train.config import TrainConfig
from llm_train.stop import TrainingStopped
from llm_train.trainer import Trainer

_spec = importlib.util.spec_from_file_location("toy", Path(__file__).with_name("conftest.py"))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


class Sleep:
    every = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, step, model):
        time.sleep(self.seconds)
        return {}


def main() -> None:
    sleep_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    train(Path(sys.argv[1]), int(sys.argv[2]), sleep_s)


def train(run_dir: Path, steps: int, sleep_s: float = 0.0) -> dict:
    """Train (or resume) the toy run in ``run_dir`` to ``steps``; the last metrics."""
    torch.set_num_threads(1)
    mesh = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    config = TrainConfig(
        steps=steps, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1,
        checkpoint_every=1000, keep_checkpoints=2, spike_k=0, grad_accum_steps=1,
    )  # fmt: skip
    torch.manual_seed(123)
    trainer = Trainer(toy.ToyModel(), toy.ToyLoader(), config, run_dir, callbacks=[Sleep(sleep_s)],
                      mesh=mesh)  # fmt: skip
    try:
        return trainer.fit()
    except TrainingStopped as stopped:  # the test reads each rank's exit code here
        rank = dist.get_rank() if dist.is_initialized() else 0
        (run_dir / f"exit-rank{rank}.txt").write_text(f"{stopped.code} {stopped.step}\n")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
