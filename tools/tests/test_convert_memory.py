"""dcp_to_hf streams: its peak memory is about the largest tensor, not the model.

The conversion runs in a subprocess so that its peak RSS is its own; tracemalloc would not see
torch's allocations. The peak is VmHWM from /proc: ``getrusage``'s ``ru_maxrss`` survives exec on
Linux, so in a child it would include the pytest process it was forked from.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from llm_formats.checkpoint import hash_files, write_manifest
from llm_model import ModelConfig, Transformer

ROOT = Path(__file__).resolve().parents[2]
MB = 2**20
SLACK = 64 * MB  # allocator, file buffers, torch.load's unpickling; independent of model size

# ~57M float32 parameters (~230 MB); the largest tensors are the 16.8 MB embedding and head
CONFIG = ModelConfig(
    d_model=1024, n_layers=4, n_heads=8, vocab_size=4096, max_seq_len=256, ffn_hidden=2816,
    kernels=False,
)  # fmt: skip

CHILD = textwrap.dedent(
    """
    import json, sys
    from tools.convert import dcp_to_hf  # run in the repository root: tools is a package there

    def status(field):  # VmRSS: resident now; VmHWM: its peak so far (bytes)
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    baseline = status("VmRSS")
    dcp_to_hf(sys.argv[1], sys.argv[2], shard_size="150MB")
    print(json.dumps({"baseline": baseline, "peak": status("VmHWM")}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for RSS")
def test_conversion_peak_memory_is_one_tensor_not_the_model(tmp_path):
    import torch.distributed.checkpoint as dcp
    from tokenizers import Tokenizer, models

    run = tmp_path / "run"
    run.mkdir()
    tok = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1}, unk_token="a"))
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(run / "tokenizer.json"))
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Transformer(CONFIG).state_dict().items()}
    state = {k: torch.ones(s) for k, s in shapes.items()}
    total = sum(t.nbytes for t in state.values())
    largest = max(t.nbytes for t in state.values())
    checkpoint = run / "checkpoints" / "step_000001"
    dcp.save({"model": state}, checkpoint_id=checkpoint, no_dist=True)
    del state
    fields = {"step": 1, "model_config": dataclasses.asdict(CONFIG)}
    write_manifest(checkpoint, fields, hash_files(checkpoint))

    out = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkpoint), str(out)],
        capture_output=True, text=True, check=False, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    used = json.loads(result.stdout.strip().splitlines()[-1])
    grew = used["peak"] - used["baseline"]
    print(f"model {total / MB:.0f} MB, largest tensor {largest / MB:.1f} MB, "
          f"conversion grew RSS by {grew / MB:.1f} MB")  # fmt: skip
    assert total > 8 * largest  # a model for which streaming makes a difference
    assert grew < 1.5 * largest + SLACK
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == total
