"""Checkpoint save and resume time on the critical path, 1 vs 2 vs 4 gloo ranks, same shard size.

Each world size runs under torchrun (CPU, gloo) on a stack of FSDP2-sharded linear layers sized
so every rank holds the same share (``--per-rank-mb`` of model + AdamW state, about the size of
each ``__<rank>_0.distcp``): a per-rank cost stays flat as ranks are added, a cost that grows
with the model (one rank hashing every file) grows with the world size. Timed, each the median
of ``--repeats`` and the slowest rank's time:

- ``sync save``: ``save_checkpoint`` (DCP write, hashing, manifest, rename, pruning to
  ``--keep``), all of it blocking;
- ``async block``: what ``async_save_checkpoint`` blocks training for (the copy to CPU memory);
  ``async total`` is until ``wait()`` returns (write, hashing, manifest, in the background);
- ``resume``: ``latest_checkpoint`` (verification) plus ``load_checkpoint``; ``verify`` alone.

``--hashing rank0`` runs the same with the old scheme put back by patching llm_train.checkpoint
in the worker: rank 0 hashes every file at save, verifies every file at resume (then
broadcasts), and pruning re-hashes the kept checkpoints. Writes
``benchmarks/results/checkpoint-<cpu>.md`` with the date, machine, load and command.

    uv run python -m benchmarks.checkpoint.bench_checkpoint --worlds 1 2 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import RESULTS, device_name, device_slug, header, write_atomic

TIMES = ("sync save", "async block", "async total", "verify", "resume")


def _model(world: int, per_rank_mb: float):
    """Linear layers, ``world`` x 4 of them, so each rank's share of weights + AdamW's two
    moments (3 x 4 bytes per parameter) is ``per_rank_mb``."""
    from torch import nn

    params_per_rank = per_rank_mb * 1e6 / 12
    d = int((params_per_rank / 4) ** 0.5)
    return nn.Sequential(*[nn.Linear(d, d, bias=False) for _ in range(4 * world)])


def _old_scheme() -> None:
    """Put back the hashing of before issue 24, in this process: rank 0 hashes everything."""
    import torch.distributed as dist

    from llm_formats import checkpoint as formats
    from llm_train import checkpoint

    def own_hashes(tmp):
        return formats.rank_files(tmp, 0, 1) if dist.get_rank() == 0 else {}  # every file

    def verify_checkpoint(path):
        found = [formats.verify(path, (".metadata",)) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(found, src=0)
        return found[0]

    checkpoint._own_hashes = own_hashes
    checkpoint.verify_checkpoint = verify_checkpoint
    checkpoint._intact = lambda path: formats.verify(path, (".metadata",))  # re-hashes


def _slowest(seconds: float) -> float:
    import torch
    import torch.distributed as dist

    t = torch.tensor([seconds])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def _timed(fn) -> tuple[float, object]:
    import torch.distributed as dist

    dist.barrier()
    start = time.perf_counter()
    result = fn()
    return _slowest(time.perf_counter() - start), result


def worker(args: argparse.Namespace) -> None:
    """One rank under torchrun: build, step once, then time saves and resumes."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from llm_train import checkpoint

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    if args.hashing == "rank0":
        _old_scheme()
    mesh = init_device_mesh("cpu", (world,))
    model = _model(world, args.per_rank_mb)
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    d = model[0].in_features
    model(torch.randn(2, d)).sum().backward()
    optimizer.step()
    times = {name: [] for name in TIMES}
    ckpts = Path(args.dir) / "checkpoints"
    step = 0
    for _ in range(args.repeats):
        step += 1
        t, _ = _timed(lambda step=step: checkpoint.save_checkpoint(
            ckpts, step, model, optimizer, manifest={}, rank_state={}, keep=args.keep))  # fmt: skip
        times["sync save"].append(t)
        step += 1
        dist.barrier()
        start = time.perf_counter()
        pending = checkpoint.async_save_checkpoint(
            ckpts, step, model, optimizer, manifest={}, rank_state={}, keep=args.keep
        )
        times["async block"].append(_slowest(time.perf_counter() - start))
        pending.wait()
        times["async total"].append(_slowest(time.perf_counter() - start))
        newest = checkpoint.list_checkpoints(ckpts)[0]
        times["verify"].append(_timed(lambda p=newest: checkpoint.verify_checkpoint(p))[0])
        t, path = _timed(lambda: checkpoint.load_checkpoint(
            checkpoint.latest_checkpoint(ckpts), model, optimizer))  # fmt: skip
        times["resume"].append(t)
    if rank == 0:
        files = sorted((ckpts / checkpoint.formats.step_dir_name(step)).glob("*.distcp"))
        shard_mb = statistics.median(f.stat().st_size for f in files) / 1e6
        Path(args.out).write_text(json.dumps({"times": times, "shard_mb": shard_mb}))
    dist.destroy_process_group()


def run_world(world: int, hashing: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={world}", "-m", "benchmarks.checkpoint.bench_checkpoint",
               "--worker", "--dir", tmp, "--out", str(out), "--hashing", hashing,
               "--repeats", str(args.repeats), "--keep", str(args.keep),
               "--per-rank-mb", str(args.per_rank_mb)]  # fmt: skip
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
        if not out.is_file():
            raise RuntimeError(f"{world} ranks ({hashing}) failed (exit {done.returncode})")
        # At 4 ranks a rank sometimes aborts in process-group teardown ("terminate called
        # without an active exception") after writing its result: the times stand.
        result = json.loads(out.read_text())
        shutil.rmtree(tmp, ignore_errors=True)
    row = {"hashing": hashing, "ranks": world, "shard MB": f"{result['shard_mb']:.0f}"}
    for name in TIMES:
        row[f"{name} s"] = f"{statistics.median(result['times'][name]):.3f}"
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--hashings", nargs="+", default=["per-rank", "rank0"],
                        choices=["per-rank", "rank0"],
                        help="per-rank: this code; rank0: the old scheme")  # fmt: skip
    parser.add_argument("--per-rank-mb", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=int, default=2, help="save_checkpoint's keep (pruning)")
    parser.add_argument("--tmp", default=None, help="where the checkpoints go (default: $TMPDIR)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hashing", default="per-rank", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    load_before = os.getloadavg()
    rows = [run_world(w, h, args) for h in args.hashings for w in args.worlds]
    load_after = os.getloadavg()
    machine = f"{device_name(torch.device('cpu')).split(' (')[0]}, {os.cpu_count()} cores"
    command = "uv run python -m benchmarks.checkpoint.bench_checkpoint " + " ".join(sys.argv[1:])
    info = [
        *header(machine),
        ("command", f"`{command.strip()}`"),
        ("load average (1, 5, 15 min) before", ", ".join(f"{x:.2f}" for x in load_before)),
        ("load average after", ", ".join(f"{x:.2f}" for x in load_after)),
        ("times", "seconds, median of the repeats, slowest rank"),
        ("cores", f"{os.cpu_count()}: with more ranks than cores, the ranks share them and "
                  "every per-rank time grows with the contention, not the model"),
    ]  # fmt: skip
    head = "\n".join(f"- {k}: {v}" for k, v in info)
    cols = list(rows[0])
    table = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    table += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    md = f"# Checkpoint save and resume, gloo ranks on CPU\n\n{head}\n\n" + "\n".join(table) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / f"checkpoint-{device_slug(torch.device('cpu'))}.md", md)
    print(md)


if __name__ == "__main__":
    main()
