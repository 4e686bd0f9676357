"""Scoring shared among 2 gloo ranks (forked processes) equals one process's, bit for bit."""

import json
import pickle
import random
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llm_eval import Ranks, bits_per_byte, run_suite
from llm_eval.ranks import assign, steps
from llm_eval.scoring import Request, score_requests

WORLD = 2
SAMPLE_EVAL = Path(__file__).parents[3] / "data" / "sample" / "eval"
TEXTS = ["the cat sat on the mat. " * k for k in range(1, 12)] + ["a dog.", "\u00e9t\u00e9 " * 30]


def test_assign_is_deterministic_and_balanced_by_cost():
    rng = random.Random(0)
    costs = [rng.choice([1, 2, 3, 50, 400]) for _ in range(101)]
    for world in (1, 2, 3, 8):
        owner = assign(costs, world)
        assert owner == assign(costs, world)
        loads = [sum(c for c, r in zip(costs, owner, strict=True) if r == k) for k in range(world)]
        # longest processing time first: no rank exceeds another by more than one item's cost
        assert max(loads) - min(loads) <= max(costs)
        assert sorted(set(owner)) == list(range(world))
    # by cost, not by count: one costly item alone on a rank, the cheap ones on the other
    assert assign([100, 1, 1, 1], 2) == [0, 1, 1, 1]


def test_lockstep_runs_the_largest_count_on_every_rank():
    owner = [0, 1, 1, 1]
    assert steps(owner, Ranks(rank=0, world=2)) == ([0], 1)
    assert steps(owner, Ranks(rank=0, world=2, lockstep=True)) == ([0], 3)
    assert steps(owner, Ranks(rank=1, world=2, lockstep=True)) == ([1, 2, 3], 3)


def _score_all(model, tok, task_paths, out, ranks):
    requests = [Request((tok.eos_id,), tuple(ids[:60])) for ids in tok.encode_batch(TEXTS)]
    plain = score_requests(model, requests, batch_size=3, max_seq_len=64, device="cpu",
                           packed=False, ranks=ranks)  # fmt: skip
    bpb = bits_per_byte(model, tok, TEXTS, seq_len=16, batch_size=2, ranks=ranks)
    tasks = run_suite(model, tok, task_paths, max_seq_len=160, limit=12, batch_size=4,
                      output_dir=out, progress=False, ranks=ranks)  # fmt: skip
    return {"plain": plain, "bpb": bpb, "tasks": tasks}


def _rank_main(rank, init_file, out, model, tok, task_paths, lockstep):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        ranks = Ranks.of_process_group(lockstep=lockstep)
        got = _score_all(model, tok, task_paths, out / "eval", ranks)
        (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(got))
    finally:
        dist.destroy_process_group()


def _records(out):
    records = {p.name: p.read_text() for p in sorted(out.glob("*.jsonl"))}
    summary = json.loads((out / "results.json").read_text())
    summary.pop("seconds")  # wall time per task
    return records, summary


def test_two_ranks_score_like_one_process(models, byte_tok, tmp_path):
    """Plain and packed scoring, bits per byte and two tasks (multiple choice and lambada) on 2
    ranks, replicated and in lockstep: the same per-request floats, records and metrics as one
    process, on every rank; rank 0 alone writes the results."""
    model = models.TinyAttentionKeep()  # packed rows, the head at scored positions only
    paths = [SAMPLE_EVAL / "hellaswag.jsonl.gz", SAMPLE_EVAL / "lambada.jsonl.gz"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same kernels, so the same last bits
    try:
        want = _score_all(model, byte_tok, paths, tmp_path / "one", None)
    finally:
        torch.set_num_threads(threads)
    for lockstep in (False, True):
        out = tmp_path / f"two_lockstep{int(lockstep)}"
        mp.start_processes(
            _rank_main,
            args=(tmp_path / f"pg_{lockstep}", out, model, byte_tok, paths, lockstep),
            nprocs=WORLD,
            start_method="fork",  # no re-import of torch per rank
        )
        for rank in range(WORLD):
            assert pickle.loads((out / f"rank{rank}.pkl").read_bytes()) == want, (lockstep, rank)
        assert _records(out / "eval") == _records(tmp_path / "one")
        assert not list(out.glob("eval/*.tmp*"))
