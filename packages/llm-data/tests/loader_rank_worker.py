"""One rank of the 2-process loader test (test_loader.py starts two, as torchrun would).

Usage: python loader_rank_worker.py SHARDS_DIR WORK_DIR, with RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE in the environment; reads WORK_DIR/world1_state.json (a state saved at world
size 1), writes WORK_DIR/rank<RANK>.json. torch.distributed (gloo, file store) is
initialized because streaming coordinates the ranks of a node through it and shared memory.
Each scenario records its batches (token rows) or its error, so one failure does not hide others.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import traceback
from pathlib import Path

import torch.distributed as dist

from llm_data import build_loader
from llm_data.training_data.mixture import MixtureConfig, MixturePhase, SeqLenPhase

BATCH_SIZE, SEED, SEQ_LEN, STEPS = 4, 7, 32, 5
# test_loader.PHASES: books only for 3 steps, then both; 8-token rows for 2 steps
PHASES = MixtureConfig(
    schedule=[
        MixturePhase(until_step=3, proportions={"books": 1}),
        MixturePhase(proportions={"books": 1, "code": 1}),
    ],
    seq_len_schedule=[SeqLenPhase(until_step=2, seq_len=8)],
)


def _rows(batch) -> list[list[int]]:
    return batch["input_ids"].tolist()


def _take(it, n) -> list[list[list[int]]]:
    return [_rows(b) for b in itertools.islice(it, n)]


def interrupted(shards):
    """STEPS batches, the state, then STEPS more: the uninterrupted continuation."""
    loader = build_loader(shards, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, seed=SEED)
    try:
        it = iter(loader)
        before = _take(it, STEPS)
        state = loader.state_dict()
        return {"before": before, "state": state, "after": _take(it, STEPS)}
    finally:
        loader.close()


def resumed(shards, state, batch_size=BATCH_SIZE):
    loader = build_loader(shards, seq_len=SEQ_LEN, batch_size=batch_size, seed=SEED)
    try:
        loader.load_state_dict(state)
        return {"after": _take(iter(loader), STEPS)}
    finally:
        loader.close()


def one_epoch(shards):
    """Every batch of epoch 0 (the loader counts epochs in its state)."""
    loader = build_loader(shards, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, seed=SEED)
    try:
        batches = []
        for batch in itertools.islice(loader, 1000):
            batches.append(_rows(batch))
            if loader.state_dict()["epoch"] > 0:
                break
        return {"batches": batches, "dropped": getattr(loader, "dropped_per_epoch", None)}
    finally:
        loader.close()


def phases(shards):
    """A run through both mixture phases: 4 batches, the state, 4 more."""
    loader = build_loader(
        shards, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, seed=SEED, mixture=PHASES, steps=8
    )
    try:
        it = iter(loader)
        before = _take(it, 4)
        state = loader.state_dict()
        return {"before": before, "state": state, "after": _take(it, 4)}
    finally:
        loader.close()


def main() -> None:
    shards, work = sys.argv[1], Path(sys.argv[2]).resolve()
    rank = int(os.environ["RANK"])
    store = f"file://{work / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    world1_state = json.loads((work / "world1_state.json").read_text())
    results = {}
    scenarios = {
        "interrupted": lambda: interrupted(shards),
        "resumed": lambda: resumed(shards, results["interrupted"]["state"]),
        "epoch": lambda: one_epoch(shards),
        "from_world1": lambda: resumed(shards, world1_state),
        "phases": lambda: phases(shards),
    }
    for name, run in scenarios.items():
        try:
            results[name] = run()
        except Exception:
            results[name] = {"error": traceback.format_exc()}
    (work / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
