"""Peak memory of curation and of the shards stage as the input grows 1x, 4x, 16x: it must be flat.

The base input is a slice of `data/sample` (the first `--web-pages` pages of two handbook WARC
files, the first `--docs` books and code files). Input `k`x repeats it `k` times under new ids:
every WARC copy is a new record (a new `WARC-Record-ID`, the URL with `?copy=<j>`), every JSONL
copy a new `id`. Curation (exact, URL and MinHash dedup; `--workers` processes) runs on it in a
child process; then the shards stage (`tokenize_to_shards`, a 512-token BPE trained here) runs
in another child on the 1x curated output repeated `k` times under new ids (curation's dedup
keeps one copy of repeated text, so its own output does not grow).

Memory is the peak over time of the summed resident set size (VmRSS) of the child and all its
descendants (datatrove's worker processes), sampled every `--interval` s from /proc. Pages that
forked workers share are counted once per process, as `ps` would. A row's ratio is its peak over
the 1x peak: flat means every ratio is within 1.2.

Run (a few minutes on 2 CPU cores):

    uv run python -m benchmarks.data.bench_memory_scaling

Writes `benchmarks/results/memory-scaling-<cpu>.md` (date, machine, load average, git revision).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._machine import cpu_name, cpu_slug

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
RESULTS = ROOT / "benchmarks" / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
FLAT = 1.2  # the target: within 20% of the 1x peak


def write_inputs(root: Path, copies: int, web_pages: int, docs: int) -> None:
    """`root/{web,books,code}/`: WARC and gzipped JSONL files holding the base `copies` times."""
    for name in ("web", "books", "code"):
        (root / name).mkdir(parents=True)
    for lang in ("en-US", "de-DE"):
        _repeat_warc(SAMPLE / "web" / f"handbook-{lang}.warc.gz", root / "web", copies, web_pages)
    for name in ("books", "code"):
        (src,) = (SAMPLE / name).glob("*.jsonl.gz")
        with gzip.open(src, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for _, line in zip(range(docs), f, strict=False)]
        repeat_jsonl(rows, root / name / src.name, copies)


def repeat_jsonl(rows: list[dict], path: Path, copies: int) -> None:
    """`rows` `copies` times, copy `j` with ids `<id>-<j>`, into one gzipped JSONL file."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for j in range(copies):
            for row in rows:
                f.write(json.dumps({**row, "id": f"{row['id']}-{j}"}) + "\n")


def _repeat_warc(src: Path, out_dir: Path, copies: int, pages: int) -> None:
    """The first `pages` responses of `src`, `copies` times as new records, one file per copy."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    responses = []
    with open(src, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response":
                uri = record.rec_headers.get_header("WARC-Target-URI")
                responses.append((uri, record.http_headers.to_bytes() + record.raw_stream.read()))
                if len(responses) == pages:
                    break
    for j in range(copies):
        with open(out_dir / f"{src.name.split('.')[0]}-{j}.warc.gz", "wb") as out:
            writer = WARCWriter(out, gzip=True)
            for uri, payload in responses:  # warcio gives every record a new WARC-Record-ID
                record = writer.create_warc_record(
                    f"{uri}?copy={j}",
                    "response",
                    payload=io.BytesIO(payload),
                    warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
                )
                writer.write_record(record)


def repeat_curated(curated: Path, out: Path, copies: int, split: bool = False) -> None:
    """The curated output `curated/<source>/*.jsonl.gz` repeated `copies` times under new ids:
    one file per source, or with `split` one file per copy (`<j>.jsonl.gz`, ids `<id>-<j>`)."""
    from llm_formats.documents import curated_sources  # the seam's one listing (no logs/)

    for name, paths in curated_sources(curated).items():
        rows = []
        for path in paths:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                rows += [json.loads(line) for line in f]
        (out / name).mkdir(parents=True)
        if not split:
            repeat_jsonl(rows, out / name / "00000.jsonl.gz", copies)
            continue
        for j in range(copies):
            copy = [{**row, "id": f"{row['id']}-{j}"} for row in rows]
            repeat_jsonl(copy, out / name / f"{j:05d}.jsonl.gz", 1)


def train_tokenizer(path: Path) -> None:
    """A 512-token byte-level BPE with `<|endoftext|>`, trained on 100 kB of the books."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with gzip.open(SAMPLE / "books" / "shakespeare.jsonl.gz", "rt") as f:
        text = json.loads(f.readline())["text"][:100_000]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([text], trainer)
    tokenizer.save(str(path))


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # exited meanwhile
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_rss(pid: int) -> tuple[int, int]:
    """(summed resident bytes, process count) of `pid` and all its descendants now."""
    tree, todo, total, count = _children(), [pid], 0, 0
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
            count += 1
        except OSError:
            pass
        todo += tree.get(p, [])
    return total, count


def measure(args: list[str], interval: float, log: Path) -> dict:
    """Run `python -m benchmarks.data.bench_memory_scaling <args>` and sample its tree's RSS."""
    cmd = [sys.executable, "-m", "benchmarks.data.bench_memory_scaling", *args]
    with open(log, "ab") as sink:  # datatrove's per-stage logs: kept out of the table's way
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink)
        return _sample(child, cmd, interval, time.perf_counter())


def _sample(child: subprocess.Popen, cmd: list[str], interval: float, start: float) -> dict:
    peak, processes = 0, 0
    while child.poll() is None:
        rss, count = tree_rss(child.pid)
        peak, processes = max(peak, rss), max(processes, count)
        time.sleep(interval)
    if child.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {child.returncode}; see its log")
    return {"peak": peak, "processes": processes, "seconds": time.perf_counter() - start}


def child_curation(inputs: Path, out: Path, workers: int) -> None:
    from llm_data import CurationConfig, SourceConfig, run_curation

    sources = [
        SourceConfig(name="web", path=str(inputs / "web" / "*.warc.gz"), format="warc"),
        SourceConfig(name="books", path=str(inputs / "books"), format="jsonl",
                     quality_filters=False),
        SourceConfig(name="code", path=str(inputs / "code"), format="jsonl",
                     quality_filters=False),
    ]  # fmt: skip
    config = CurationConfig(
        sources=sources, output_dir=str(out), languages=(), tasks=workers, workers=workers
    )
    stats = run_curation(config)
    print(json.dumps({s: row["documents_out"] for s, row in stats.items()}))


def child_shards(curated: Path, tokenizer: Path, out: Path) -> None:
    from llm_data import tokenize_to_shards
    from llm_data.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer, "<|endoftext|>")
    stats = tokenize_to_shards(curated, tok, out, seq_len=256)
    print(json.dumps(stats))


def _docs_in(folder: Path) -> int:
    n = 0
    for path in folder.glob("*/*.jsonl.gz"):
        if path.parent.name != "excluded":
            with gzip.open(path, "rt") as f:
                n += sum(1 for _ in f)
    return n


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="memory-scaling-") as tmp:
        work = Path(tmp)
        train_tokenizer(work / "tokenizer.json")
        for k in args.scales:
            inputs, curated = work / f"in-{k}", work / f"curated-{k}"
            write_inputs(inputs, k, args.web_pages, args.docs)
            size = sum(p.stat().st_size for p in inputs.rglob("*") if p.is_file())
            m = measure(["--child", "curation", str(inputs), str(curated), str(args.workers)],
                        args.interval, args.log)  # fmt: skip
            rows.append({"stage": "curation", "scale": k, "input_mb": size / 1e6,
                         "docs_out": _docs_in(curated), **m})  # fmt: skip
            print(rows[-1], flush=True)
        for k in args.scales:
            repeated, shards = work / f"shards-in-{k}", work / f"shards-{k}"
            repeat_curated(work / f"curated-{args.scales[0]}", repeated, k)
            size = sum(p.stat().st_size for p in repeated.rglob("*") if p.is_file())
            m = measure(["--child", "shards", str(repeated), str(work / "tokenizer.json"),
                         str(shards)], args.interval, args.log)  # fmt: skip
            rows.append({"stage": "shards", "scale": k, "input_mb": size / 1e6,
                         "docs_out": _docs_in(repeated), **m})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"  # fmt: skip
    lines = [
        "# Peak memory of curation and shards, 1x to 16x input",
        "",
        f"- date: {now}",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- load average at the end (1, 5, 15 min): {load}",
        f"- git: {git}",
        f"- base input: {args.web_pages} pages of 2 handbook WARC files, {args.docs} books and "
        f"{args.docs} code files of data/sample; curation with {args.workers} workers "
        f"(tasks = workers), shards with seq_len 256",
        "- peak: max over time of the summed VmRSS of the stage's process and its descendants "
        f"(sampled every {args.interval} s); ratio: peak / the stage's 1x peak (flat: <= {FLAT})",
        "",
        "| stage | input | input MB | docs out | peak MiB | ratio | processes | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {r["stage"]: r["peak"] for r in rows if r["scale"] == args.scales[0]}
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['scale']}x | {r['input_mb']:.1f} | {r['docs_out']} | "
            f"{r['peak'] / 2**20:.0f} | {r['peak'] / base[r['stage']]:.2f} | {r['processes']} | "
            f"{r['seconds']:.0f} |"
        )
    worst = max(r["peak"] / base[r["stage"]] for r in rows)
    verdict = "flat" if worst <= FLAT else "NOT flat"
    lines += ["", f"Largest ratio {worst:.2f}: {verdict} (target <= {FLAT})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one measured stage, in its own process tree
        kind, *paths = argv[1:]
        if kind == "curation":
            child_curation(Path(paths[0]), Path(paths[1]), int(paths[2]))
        else:
            child_shards(Path(paths[0]), Path(paths[1]), Path(paths[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--web-pages", type=int, default=6, help="per WARC file, base input")
    parser.add_argument("--docs", type=int, default=3, help="books and code files, base input")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--log", type=Path, default=Path("/tmp/memory-scaling.log"), help="the stages' own output"
    )
    args = parser.parse_args(argv)
    text = table(run(args), args)
    print(text)
    out = args.out or RESULTS / f"memory-scaling-{cpu_slug()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
