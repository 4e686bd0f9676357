"""The same curation config on datatrove's Slurm executor (a dry run with a fake `sbatch`) and,
with the shards, on its Ray executor (one local Ray cluster the module starts; the [ray] extra)."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from llm_data import CurationConfig, DedupConfig, RayConfig, SlurmConfig, SourceConfig, run_curation

FAKE_SBATCH = """#!/bin/bash
# Records its arguments and the submitted script; answers like sbatch with a new job id.
dir="$FAKE_SLURM_DIR"
n=$(( $(cat "$dir/counter" 2>/dev/null || echo 1000) + 1 ))
echo "$n" > "$dir/counter"
printf '%s\\n' "$@" > "$dir/$n.args"
cp "${@: -1}" "$dir/$n.sh"
echo "Submitted batch job $n"
"""
FAKE_SCONTROL = """#!/bin/bash
echo localhost
"""


def _write_sources(root: Path) -> list[SourceConfig]:
    words = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "klmnprst"]
    texts = [" ".join(words[i : i + 40]) for i in range(0, 160, 40)]
    records = {
        "a": [{"id": f"a{i}", "text": t} for i, t in enumerate(texts)],
        "b": [{"id": "b0", "text": texts[0]}, {"id": "b1", "text": texts[1] + " extra words"}],
    }
    sources = []
    for name, rows in records.items():
        (root / name).mkdir(parents=True)
        (root / name / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        sources.append(
            SourceConfig(name=name, path=str(root / name), format="jsonl", quality_filters=False)
        )
    return sources


def _read_ids(out: Path) -> set[str]:
    ids = set()
    for path in out.glob("*/*.jsonl.gz"):
        if path.parent.name != "excluded":
            with gzip.open(path, "rt") as f:
                ids |= {json.loads(line)["id"] for line in f}
    return ids


# a0 and b0 are one text (a0 kept: source a is listed first); b1 is a1 plus two words
# (kept as the longer one: MinHash, 5-gram Jaccard 36/38).
EXPECTED_IDS = {"a0", "b1", "a2", "a3"}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    record.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(record))
    return record


def test_slurm_dry_run_chains_stages_with_afterok(tmp_path, fake_slurm, monkeypatch):
    out = tmp_path / "out"
    config = CurationConfig(
        sources=_write_sources(tmp_path / "in"),
        output_dir=str(out),
        dedup=DedupConfig(substring=True),  # every dedup method, pickled and run as Slurm would
        tasks=2,
        executor="slurm",
        slurm=SlurmConfig(
            partition="cpu",
            time="2:00:00",
            cpus_per_task=2,
            mem_per_cpu_gb=3,
            sbatch_args={"account": "proj"},
            env_command="source .venv/bin/activate",
        ),
    )
    submitted = run_curation(config)
    jobs = submitted["jobs"]
    assert submitted["executor"] == "slurm" and not out.exists()  # submitted, not run
    assert list(jobs)[:2] == ["a", "b"] and list(jobs)[-1] == "_finalize"
    assert list(jobs)[2:-1] == [
        f"_dedup/{m}-{s}"
        for m, steps in (
            ("exact", ("signatures", "duplicates", "filter")),
            ("url", ("duplicates", "filter")),
            ("minhash", ("buckets", "clusters", "filter")),
            ("substring", ("duplicates", "filter")),
        )
        for s in steps
    ]
    stage_of = {job_id: stage for stage, job_id in jobs.items()}
    names = list(jobs)
    scripts = {}
    for job_id, stage in stage_of.items():
        args = (fake_slurm / f"{job_id}.args").read_text().splitlines()
        script = (fake_slurm / f"{job_id}.sh").read_text()
        scripts[stage] = script
        dependency = [a for a in args if a.startswith("--dependency=")]
        i = names.index(stage)
        if stage in ("a", "b"):
            assert dependency == []  # the sources are filtered in parallel
        elif stage == "_dedup/exact-signatures":
            assert dependency == [f"--dependency=afterok:{jobs['a']}:{jobs['b']}"]
        else:
            assert dependency == [f"--dependency=afterok:{jobs[names[i - 1]]}"]
        for line in (
            "#SBATCH --partition=cpu",
            "#SBATCH --time=2:00:00",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem-per-cpu=3G",
            "#SBATCH --account=proj",
            "source .venv/bin/activate",
        ):
            assert line in script, (stage, line)
    arrays = {s: re.search(r"#SBATCH --array=0-(\d+)", t).group(1) for s, t in scripts.items()}
    assert arrays["a"] == "0" and arrays["_dedup/exact-filter"] == "1"  # 1 file; tasks=2
    assert arrays["_dedup/minhash-buckets"] == "13" and arrays["_dedup/minhash-clusters"] == "0"

    # Run each job's tasks the way Slurm would (array index in SLURM_ARRAY_TASK_ID), in
    # dependency order: the pickled pipelines produce the same output as a local run.
    import dill

    for stage in names:
        path = re.search(r"launch_pickled_pipeline (\S+)", scripts[stage]).group(1)
        for task in range(int(arrays[stage]) + 1):
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
            monkeypatch.setenv("SLURM_NODELIST", "localhost")
            with open(path, "rb") as f:  # a fresh process per task, as on Slurm
                dill.load(f).run()
    assert _read_ids(out) == EXPECTED_IDS
    stats = json.loads((out / "curation_stats.json").read_text())
    assert stats["b"]["stages"][-4]["removed_by"] == {"exact_duplicate": 1}
    assert stats["b"]["stages"][-1]["stage"] == "SubstringDedup"
    assert stats["b"]["stages"][-1]["kept"] == 1


def test_slurm_needs_a_partition(tmp_path):
    with pytest.raises(ValueError, match="slurm.partition"):
        CurationConfig(
            sources=_write_sources(tmp_path), output_dir=str(tmp_path / "o"), executor="slurm"
        )


def _without_seconds(stats: dict) -> dict:
    """Curation stats less the wall times, which differ between any two runs."""
    return {name: {k: v for k, v in row.items() if k != "seconds"} for name, row in stats.items()}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for this module's Ray tests, shut down after them:
    starting one costs tens of seconds on a 2-core machine."""
    ray = pytest.importorskip("ray", reason="ray not installed (llm-data's [ray] extra)")
    ray.init(
        address="local",  # a new cluster even if RAY_ADDRESS points at one
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        # A raylet registers within 60 s by default: too short on a loaded 2-core machine.
        _system_config={"raylet_start_wait_time_s": 600},
    )
    yield RayConfig(num_cpus=2, mem_per_cpu_gb=0.25)  # what the tests' configs say
    ray.shutdown()


@pytest.mark.slow
def test_ray_curation_equals_local(ray_cluster, small_inputs, helpers, tmp_path):
    """The local Ray cluster curates what the local executor does: the same documents and the
    same per-stage stats, on the small inputs (a WARC slice of the sample corpus, a few books).

    Exact dedup only: datatrove starts every task of a Ray stage as a new actor (a fresh
    process that imports the pipeline: 4-9 s each on 2 cores), and URL and MinHash dedup add 5
    more one-task stages (14 with MinHash's default bands) of the same kind as exact dedup's
    three (tasks that read the previous stage's files), which run on the local pool in
    test_curation.py and test_dedup.py. Here both sources are filtered on Ray, and exact dedup
    finds the books' planted duplicate across tasks.
    """
    from llm_data import DedupConfig

    def config(out: str, **fields):
        dedup = DedupConfig(url=False, minhash=False)
        return helpers.small_curation_config(
            small_inputs["root"], tmp_path / out, dedup=dedup, **fields
        )

    local = run_curation(config("local"))
    on_ray = run_curation(config("ray", executor="ray", workers=2, ray=ray_cluster))
    for source in ("web", "books"):
        ours, theirs = tmp_path / "ray" / source, tmp_path / "local" / source
        assert helpers.read_curated(ours) == helpers.read_curated(theirs), source
    assert _without_seconds(on_ray) == _without_seconds(local)
    removed = [s["removed_by"] for s in local["books"]["stages"] if s.get("removed_by")]
    assert {"exact_duplicate": 1} in removed  # across tasks: the dedup stages ran


@pytest.mark.slow
def test_ray_shards_equal_local(ray_cluster, curated_small, tokenizer_json, tmp_path):
    """`tokenize_to_shards` as 2 tasks on the local Ray cluster (one actor per source's file)
    gives one local task's samples (as a multiset and in order), held-out split and stats."""
    pytest.importorskip("streaming", reason="needs the [shards] extra")
    from streaming import StreamingDataset

    from llm_data import tokenize_to_shards
    from llm_data.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_json, "<|endoftext|>")  # pickles to the actors
    kwargs = {"seq_len": 16, "heldout_fraction": 0.2, "seed": 3}
    local = tokenize_to_shards(curated_small, tok, tmp_path / "local", tasks=1, **kwargs)
    # run_config is a curation config: the shards take its executor settings only
    run_config = CurationConfig(
        sources=[SourceConfig(name="books", path=str(curated_small / "books"), format="jsonl")],
        executor="ray",
        ray=ray_cluster,
    )
    on_ray = tokenize_to_shards(
        curated_small, tok, tmp_path / "ray", tasks=2, workers=2, run_config=run_config, **kwargs
    )
    assert on_ray == local and local["sources"]["code"]["samples"] > 0
    for name in ("shard_stats.json", "heldout.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    for source in ("books", "code"):
        samples = {}
        for run in ("local", "ray"):
            folder = str(tmp_path / run / source)
            dataset = StreamingDataset(local=folder, shuffle=False, batch_size=1)
            samples[run] = [tuple(dataset[i]["tokens"].tolist()) for i in range(len(dataset))]
        assert sorted(samples["ray"]) == sorted(samples["local"]), source
        assert samples["ray"] == samples["local"], source
    tasks = {p.parent.name for p in (tmp_path / "ray").glob("*/0000[0-9]/index.json")}
    assert tasks == {"00000", "00001"}  # each Ray task wrote its share
