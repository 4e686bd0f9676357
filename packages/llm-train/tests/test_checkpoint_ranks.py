"""Per-rank checkpoint hashing on 2 gloo ranks (forked): each rank hashes the files it wrote at
save and its own share at resume, and the ranks agree on the newest valid checkpoint."""

import json
import logging

import torch
import torch.distributed as dist
import torch.distributed.checkpoint  # noqa: F401  (imported once here, inherited by the forks)
import torch.distributed.fsdp  # noqa: F401
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh

import llm_formats.checkpoint as formats
from llm_train.checkpoint import async_save_checkpoint, latest_checkpoint, save_checkpoint
from llm_train.config import TrainConfig
from llm_train.optimizer import build_optimizer
from llm_train.parallel import apply_fsdp

WORLD = 2


def _hashed_names(module_globals: dict) -> list[str]:
    """Record the names of the files this process hashes through llm_formats."""
    names: list[str] = []
    real = formats.sha256_file

    def recording(path):
        names.append(path.name)
        return real(path)

    module_globals["sha256_file"] = recording
    return names


def _sharded_toy(rank, init_file, model_cls):
    """Join the gloo group; the toy model sharded over it (FSDP2) and its optimizer."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    apply_fsdp(model, init_device_mesh("cpu", (WORLD,)), param_dtype="fp32")
    return model, build_optimizer(model, TrainConfig(steps=1, lr=1e-2))


def _rank_main(rank, init_file, out, model_cls):
    model, optimizer = _sharded_toy(rank, init_file, model_cls)
    try:
        names = _hashed_names(vars(formats))  # a fork: the patch stays in this rank
        ckpts = out / "ckpt"
        save_checkpoint(ckpts, 1, model, optimizer, manifest={}, rank_state={"rank": rank})
        saved = list(names)
        async_save_checkpoint(
            ckpts, 2, model, optimizer, manifest={}, rank_state={"rank": rank}
        ).wait()
        saved_async = list(names[len(saved) :])
        if rank == 1:  # rank 1's own shard of the newest checkpoint gets one flipped byte
            shard = ckpts / "step_000002" / "__1_0.distcp"
            raw = bytearray(shard.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            shard.write_bytes(bytes(raw))
        dist.barrier()
        del names[:]
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logging.getLogger("llm_train.checkpoint").addHandler(handler)
        found = latest_checkpoint(ckpts)
        result = {"saved": saved, "saved_async": saved_async, "resume": list(names),
                  "found": found.name if found else None, "warnings": records}  # fmt: skip
        (out / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_each_rank_hashes_its_shard_and_a_corrupt_one_falls_back(toy, tmp_path):
    mp.start_processes(
        _rank_main, args=(tmp_path / "pg_init", tmp_path, toy.Model), nprocs=WORLD,
        start_method="fork",
    )  # fmt: skip
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    # Save (sync, then async): each rank hashed only what it wrote; rank 0 also .metadata.
    for key in ("saved", "saved_async"):
        assert sorted(ranks[0][key]) == [".metadata", "__0_0.distcp"]
        assert ranks[1][key] == ["__1_0.distcp"]
    for step in (1, 2):
        manifest = formats.read_manifest(tmp_path / "ckpt" / formats.step_dir_name(step))
        assert sorted(manifest["files"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
        assert manifest["rank_states"] == [{"rank": 0}, {"rank": 1}]
    # No per-rank hash file is left in the final checkpoint.
    assert sorted(p.name for p in (tmp_path / "ckpt" / "step_000002").iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp", "manifest.json",
    ]  # fmt: skip
    # Resume: rank 1 found its corrupt shard; both ranks fell back to step 1 together.
    assert [r["found"] for r in ranks] == ["step_000001", "step_000001"]
    assert "__1_0.distcp" in ranks[1]["resume"] and "__1_0.distcp" not in ranks[0]["resume"]
    assert sorted(ranks[0]["resume"]) == [".metadata", ".metadata", "__0_0.distcp",
                                          "__0_0.distcp"]  # fmt: skip
    (warning,) = ranks[0]["warnings"]
    assert "step_000002" in warning and "sha256 mismatch for __1_0.distcp" in warning
    assert "found by rank 1" in warning


def _s3_rank_main(rank, init_file, out, model_cls, url):
    model, optimizer = _sharded_toy(rank, init_file, model_cls)
    try:
        from llm_train import object_store

        real, hashed = object_store._sha256, []

        def recording(fs, path):
            hashed.append(path.rsplit("/", 1)[1])
            return real(fs, path)

        object_store._sha256 = recording  # a fork: the patch stays in this rank
        for step in (1, 2):
            save_checkpoint(url, step, model, optimizer, manifest={}, rank_state={"rank": rank})
        saved = list(hashed)
        if rank == 1:  # rank 1's own shard of the newest checkpoint gets one flipped byte
            fs, _ = object_store.filesystem(url)
            shard = f"{url}/step_000002/__1_0.distcp"
            raw = bytearray(fs.cat_file(shard))
            raw[len(raw) // 2] ^= 0xFF
            fs.pipe_file(shard, bytes(raw))
        dist.barrier()
        del hashed[:]
        found = latest_checkpoint(url)
        result = {"saved": saved, "resume": list(hashed), "found": found}
        (out / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_ranks_save_to_s3_each_hashing_its_shard(toy, tmp_path, s3):
    url = f"{s3.url}/run/checkpoints"
    mp.start_processes(
        _s3_rank_main, args=(tmp_path / "pg_init", tmp_path, toy.Model, url), nprocs=WORLD,
        start_method="fork",
    )  # fmt: skip
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert sorted(ranks[0]["saved"]) == [".metadata", ".metadata", "__0_0.distcp", "__0_0.distcp"]
    assert ranks[1]["saved"] == ["__1_0.distcp", "__1_0.distcp"]
    from llm_train import object_store

    manifest = object_store.read_manifest(f"{url}/step_000002")
    assert sorted(manifest["files"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert manifest["rank_states"] == [{"rank": 0}, {"rank": 1}]
    # Rank 1 found its corrupt shard; both ranks fell back to step 1 together.
    assert [r["found"] for r in ranks] == [f"{url}/step_000001"] * 2
    assert "__1_0.distcp" in ranks[1]["resume"] and "__1_0.distcp" not in ranks[0]["resume"]
