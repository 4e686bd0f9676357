import contextlib

import pytest
import torch

from llm_train.config import TrainConfig
from llm_train.metrics import read_metrics
from llm_train.precision import autocast
from llm_train.trainer import Trainer


def test_cpu_bf16_falls_back_to_fp32():
    assert isinstance(autocast(torch.device("cpu"), "bf16"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu"), "fp32"), contextlib.nullcontext)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_compile_and_activation_checkpointing(toy, tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(
        steps=30, lr=1e-2, precision="bf16", compile=True, activation_checkpointing=True,
        log_every=10, peak_flops=1e15,
    )  # fmt: skip
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
    final = Trainer(toy.Model().cuda(), toy.Loader(), config, tmp_path).fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert final["skipped_total"] == 0 and losses[-1] < losses[0] and final["mfu"] > 0
