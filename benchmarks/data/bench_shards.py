"""Shard writing in tokens/s per core, side by side with datatrove's DocumentTokenizer.

One run, on the same curated data and the same tokenizer:

1. Curation (`run_curation`, the pipeline's own settings) of a slice of `data/sample`
   (`--web-pages` pages of two handbook WARC files, `--docs` books and code files), with 1 and
   2 workers (4 tasks either way, so both runs do the same work).
2. A byte-level BPE trained with llm-tokenize on that curated text (`--vocab-size`), saved as
   the `tokenizer.json` both tools load.
3. The curated output repeated `--copies` times under new ids, one file per copy and source (so
   tasks get even shares), tokenized by llm-data's `tokenize_to_shards` (MDS shards, packed
   into samples of `--seq-len` + 1 tokens, no held-out split) and by datatrove's
   `JsonlReader` -> `DocumentTokenizer` (EOS after each document; `shuffle_documents` off, as
   our shards are not shuffled at write time; `--dt-shuffle` adds its default, shuffled run),
   each with 1 and 2 workers and `--tasks` tasks.
4. A profile: each tool once more at 1 worker under cProfile, and the share of its time spent
   in the tokenizer's encode (`encode_batch_fast` for ours, `encode_batch` for datatrove's).

Every measured run is a child process with `TOKENIZERS_PARALLELISM=false`, so a worker is one
core and "per core" is tokens/s over workers. `CPU s` is the user + system time of the child's
work and of every process under it (this script is their subreaper and reaps them all, so
datatrove's forkserver workers count too), from the start to the end of the run (not the
child's imports or exit), so tokens per CPU second is the rate that a loaded
machine disturbs least. Token
counts include one EOS per document; ours also counts each file's last partial sample, which
it drops, so the two tools' counts match when they tokenize alike.

Run (about 2-3 minutes on 2 cores):

    uv run python -m benchmarks.data.bench_shards

Writes `benchmarks/results/shards-<cpu>.md` (date, machine, load average, git revision).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._machine import cpu_name, cpu_slug
from benchmarks.data.bench_memory_scaling import repeat_curated, write_inputs

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
EOS = "<|endoftext|>"
SOURCES = ("web", "books", "code")


def measure(kind: str, args: dict, log: Path) -> dict:
    """Run `kind` in a child process (one core per worker); its JSON result line, parsed.

    CPU: what the child counted during the run (itself and the workers it reaped) plus the
    orphans this process adopted and reaped (datatrove's forkserver and its workers); not the
    child's start-up or exit (imports, tearing down torch).
    """
    cmd = [sys.executable, "-m", "benchmarks.data.bench_shards", "--child", kind, json.dumps(args)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    _adopt_descendants()
    before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    with open(log, "ab") as sink:  # the tools' own logs: kept out of the table's way
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=sink)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # the child's own usage, without the orphans
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{kind} {args} exited with {status}; see {log}")
    time.sleep(0.5)  # the orphans (datatrove's forkserver) exit on their parent's exit
    _reap()
    orphans = _cpu_seconds(resource.RUSAGE_CHILDREN) - before - usage.ru_utime - usage.ru_stime
    result = json.loads(out.decode().strip().splitlines()[-1])
    if "cpu_run" in result:
        result["cpu"] = result.pop("cpu_run") + orphans
    return result


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _adopt_descendants() -> None:
    """Make this process the subreaper of its tree, so orphaned workers come back to it."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap() -> None:
    """Wait for every exited child (a pool's terminated workers, adopted orphans)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _timed(fn, profile: bool = False) -> dict:
    """`fn()`'s result with its wall time and the CPU of this process and its reaped children
    during it; with `profile`, under cProfile, with the share of its time in the tokenizer's
    encode."""

    def cpu() -> float:
        return _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN)

    before, start = cpu(), time.perf_counter()
    if not profile:
        result = fn()
        seconds = time.perf_counter() - start
        time.sleep(0.5)  # let a pool's terminated workers exit, then count them
        _reap()
        return {"seconds": seconds, "cpu_run": cpu() - before, **result}
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    result = profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    encode = {name: tt for (_, _, name), (_, _, tt, _, _) in stats.stats.items()
              if "encode_batch" in name and "tokenizers" in name}  # fmt: skip
    return {"encode": encode, "profiled": stats.total_tt, **result}


def child_curation(a: dict) -> dict:
    from llm_data import CurationConfig, SourceConfig, run_curation

    inputs = Path(a["inputs"])
    sources = [
        SourceConfig(name="web", path=str(inputs / "web" / "*.warc.gz"), format="warc"),
        SourceConfig(name="books", path=str(inputs / "books"), format="jsonl",
                     quality_filters=False),
        SourceConfig(name="code", path=str(inputs / "code"), format="jsonl",
                     quality_filters=False),
    ]  # fmt: skip
    config = CurationConfig(
        sources=sources, output_dir=a["out"], languages=(), tasks=4, workers=a["workers"]
    )

    def run() -> dict:
        stats = run_curation(config)
        return {"docs": sum(s["documents_out"] for s in stats.values())}

    return _timed(run)


def child_ours(a: dict) -> dict:
    import streaming  # noqa: F401  (imported before the clock starts, as datatrove's modules are)

    from llm_data import tokenize_to_shards
    from llm_tokenize import Tokenizer

    tok = Tokenizer.from_file(a["tokenizer"], EOS)

    def run() -> dict:
        stats = tokenize_to_shards(
            a["curated"], tok, a["out"], seq_len=a["seq_len"], heldout_fraction=0.0,
            tasks=a["tasks"], workers=a["workers"],
        )  # fmt: skip
        s = stats["sources"].values()
        return {"tokens": sum(x["tokens"] + x["tokens_dropped"] for x in s)}

    return _timed(run, a.get("profile", False))


def child_datatrove(a: dict) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    def run() -> dict:
        for source in SOURCES:  # one output per source, as ours has
            out = Path(a["out"]) / source
            LocalPipelineExecutor(
                pipeline=[
                    JsonlReader(str(Path(a["curated"]) / source)),
                    DocumentTokenizer(
                        str(out), tokenizer_name_or_path=a["tokenizer"], eos_token=EOS,
                        shuffle_documents=a["shuffle"], seed=0,
                    ),
                ],
                tasks=a["tasks"], workers=a["workers"], logging_dir=str(out / "_logs"),
            ).run()  # fmt: skip
        token_bytes = sum(p.stat().st_size for p in Path(a["out"]).rglob("*.ds"))
        return {"tokens": token_bytes // 2}  # uint16: the vocabulary is below 65,536

    return _timed(run, a.get("profile", False))


def curated_texts(curated: Path):
    """The text of every document of a curation output, source by source, file by file."""
    from llm_formats.documents import curated_sources, read_documents

    for paths in curated_sources(curated).values():
        for path in paths:
            yield from (doc.text for doc in read_documents(path))


def prepare(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Curated 1x data (from the curation run), the tokenizer, and the repeated shard input."""
    from llm_tokenize import TokenizerConfig, train_tokenizer

    curated = work / "curated-w1"
    texts = curated_texts(curated)
    config = TokenizerConfig(vocab_size=args.vocab_size, max_bytes=2_000_000)
    tokenizer = work / "tokenizer.json"
    train_tokenizer(texts, config).save(tokenizer)
    shard_input = work / "shard-input"
    repeat_curated(curated, shard_input, args.copies, split=True)
    return tokenizer, shard_input


def run(args: argparse.Namespace) -> dict:
    res: dict = {"curation": [], "shards": []}
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        work = Path(tmp)
        write_inputs(work / "in", 1, args.web_pages, args.docs)
        for w in args.workers:
            m = measure("curation", {"inputs": str(work / "in"), "out": str(work / f"curated-w{w}"),
                                     "workers": w}, args.log)  # fmt: skip
            res["curation"].append({"tool": "llm-data run_curation", "workers": w, **m})
            print(res["curation"][-1], flush=True)
        tokenizer, shard_input = prepare(work, args)
        res["input_mb"] = sum(p.stat().st_size for p in shard_input.rglob("*.jsonl.gz")) / 1e6
        common = {"curated": str(shard_input), "tokenizer": str(tokenizer), "tasks": args.tasks}
        runs = [("ours", "llm-data tokenize_to_shards", {"seq_len": args.seq_len})]
        runs.append(("datatrove", "datatrove DocumentTokenizer", {"shuffle": False}))
        for w in args.workers:
            for kind, tool, extra in runs:
                out = str(work / f"{kind}-{w}")
                m = measure(kind, {**common, **extra, "workers": w, "out": out}, args.log)
                res["shards"].append({"tool": tool, "workers": w, **m})
                print(res["shards"][-1], flush=True)
        if args.dt_shuffle:
            m = measure("datatrove", {**common, "shuffle": True, "workers": 1,
                                      "out": str(work / "dt-shuffled")}, args.log)  # fmt: skip
            res["shards"].append({"tool": "datatrove DocumentTokenizer (shuffled)",
                                  "workers": 1, **m})  # fmt: skip
        res["profile"] = {}
        for kind, tool, extra in runs:  # cProfile: one worker, in the child's own process
            out = str(work / f"{kind}-profiled")
            m = measure(kind, {**common, **extra, "workers": 1, "out": out, "profile": True},
                        args.log)  # fmt: skip
            res["profile"][tool] = m
    return res


def _header(args: argparse.Namespace) -> list[str]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"  # fmt: skip
    return [
        "# Shard writing: llm-data next to datatrove's DocumentTokenizer",
        "",
        f"- date: {now}",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- load average at the end (1, 5, 15 min): {load} (other jobs share the machine when "
        f"it exceeds the core count)",
        f"- git: {git}",
        f"- command: python -m benchmarks.data.bench_shards {' '.join(sys.argv[1:])}".rstrip(),
        f"- curation input: {args.web_pages} pages of 2 handbook WARC files, {args.docs} books "
        f"and {args.docs} code files of data/sample, 4 tasks",
        f"- shard input: the curated output x{args.copies} under new ids, one gzipped JSONL "
        f"file per copy and source; {args.tasks} tasks; tokenizer: llm-tokenize BPE, vocab "
        f"{args.vocab_size}; ours: seq_len {args.seq_len}, no held-out split",
        "- one core per worker (TOKENIZERS_PARALLELISM=false): per core = tokens/s / workers",
        "",
    ]


def table(res: dict, args: argparse.Namespace) -> str:
    lines = _header(args)
    lines += [
        f"## Shards ({res['input_mb']:.1f} MB of gzipped JSONL)",
        "",
        "ratio: tokens/s per core over DocumentTokenizer's at the same workers; "
        "speedup: tokens/s over the same tool's 1 worker.",
        "",
        "| tool | workers | tokens | seconds | tokens/s | tokens/s per core | ratio | speedup "
        "| CPU s | tokens per CPU s | ratio (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rate = {(r["tool"], r["workers"]): r["tokens"] / r["seconds"] for r in res["shards"]}
    per_cpu = {(r["tool"], r["workers"]): r["tokens"] / r["cpu"] for r in res["shards"]}
    dt, nan = "datatrove DocumentTokenizer", float("nan")
    for r in res["shards"]:
        key, w = (r["tool"], r["workers"]), r["workers"]
        speedup = rate[key] / rate.get((r["tool"], 1), nan)
        lines.append(
            f"| {r['tool']} | {w} | {r['tokens']:,} | {r['seconds']:.1f} | {rate[key]:,.0f} | "
            f"{rate[key] / w:,.0f} | {rate[key] / rate.get((dt, w), nan):.2f} | {speedup:.2f} | "
            f"{r['cpu']:.1f} | {per_cpu[key]:,.0f} | "
            f"{per_cpu[key] / per_cpu.get((dt, w), nan):.2f} |"
        )
    lines += _profile(res)
    lines += ["", "## Curation (`run_curation`)", "",
              "| tool | workers | docs out | seconds | docs/s | speedup | CPU s |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    one = next(r["seconds"] for r in res["curation"] if r["workers"] == 1)
    for r in res["curation"]:
        lines.append(
            f"| {r['tool']} | {r['workers']} | {r['docs']} | {r['seconds']:.1f} | "
            f"{r['docs'] / r['seconds']:.2f} | {one / r['seconds']:.2f} | {r['cpu']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _profile(res: dict) -> list[str]:
    """cProfile of each tool at 1 worker: the time in the tokenizer's encode call."""
    lines = ["", "## Profile: time in the tokenizer's encode (cProfile, 1 worker)", "",
             "| tool | call | seconds in it | profiled seconds | share |",
             "|---|---|---|---|---|"]  # fmt: skip
    for tool, p in res["profile"].items():
        for name, seconds in p["encode"].items():
            call = name.split("'")[1] if "'" in name else name
            lines.append(
                f"| {tool} | {call} | {seconds:.1f} | {p['profiled']:.1f} | "
                f"{seconds / p['profiled']:.0%} |"
            )
    return lines


CHILDREN = {
    "curation": child_curation,
    "ours": child_ours,
    "datatrove": child_datatrove,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one measured run, in its own process
        print(json.dumps(CHILDREN[argv[1]](json.loads(argv[2]))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]),
    )  # fmt: skip
    parser.add_argument("--web-pages", type=int, default=20, help="per WARC file (curation)")
    parser.add_argument("--docs", type=int, default=6, help="books and code files (curation)")
    parser.add_argument("--copies", type=int, default=16, help="repeats of the curated output")
    parser.add_argument("--tasks", type=int, default=8, help="datatrove tasks per shard run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument(
        "--dt-shuffle", action="store_true", help="also DocumentTokenizer's shuffled run (1 worker)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/")
    parser.add_argument("--log", type=Path, default=Path("/tmp/bench-shards.log"),
                        help="the tools' own output")  # fmt: skip
    args = parser.parse_args(argv)
    if 1 not in args.workers:
        parser.error("--workers must include 1: the speedups and the profile are against it")
    text = table(run(args), args)
    print(text)
    out = args.out or RESULTS / f"shards-{cpu_slug()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
