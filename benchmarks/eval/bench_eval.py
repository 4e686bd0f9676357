"""llm-eval against lm-evaluation-harness: same exported model, same items, one CPU thread.

Our checkpoint is exported with ``llm_model.hf.export_hf`` (Llama layout) next to the Hugging
Face tokenizer files of ``llm_formats.tokenizer.hf_tokenizer_files`` (as ``tools/convert``
writes them), which prepend the end-of-text token, as llm-eval does. Both score every
(context, choice) pair of the task files; the harness's ``HFLM.loglikelihood`` loop and
llm-eval's ``run_suite`` (tokenization included in both, model loading in neither) are timed
at each batch size, alternating, and the log-likelihoods compared item by item. llm-eval also
scores the exported model through its ``hf:`` adapter, as it would
a public model. lm-eval is installed for this script only:

    uv run --with lm-eval==0.4.13 --with "huggingface-hub>=0.34,<1" --with "accelerate>=1,<2" \
        python -m benchmarks.eval.bench_eval --run runs/sample

The speed-up depends on the workload (the sample mix's 200 items per task against whole
task files, where hellaswag's long continuations dominate): to time whole files, name them and
a table of their own, e.g. with the scorers of the headline only::

    ... python -m benchmarks.eval.bench_eval --tasks <dir>/{arc_easy,piqa,hellaswag,sciq}.jsonl.gz \
        --scorers harness packed --batch-sizes 16 --repeats 1 \
        --out benchmarks/eval/results/harness-full-<cpu>.md

Writes ``benchmarks/eval/results/harness-<cpu>.md`` (or ``--out``) with date, machine, load
average and the task files.
"""

from __future__ import annotations

import os

# one CPU thread for everything, the Rust tokenizers included (they would use every core)
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, device_name, device_slug, header
from llm_formats.atomic import atomic_write_text

TASKS = ["arc_easy", "hellaswag", "lambada", "piqa", "sciq"]


def export(run: str, out: Path):
    """(our LoadedModel, HF directory): the checkpoint as a Llama model + the tokenizer files
    `tools/convert` writes (EOS prepended to every text, as llm-eval scores)."""
    from llm_formats.tokenizer import hf_tokenizer_files
    from llm_model.hf import export_hf
    from pretrain.stages import eval_model

    loaded = eval_model(run)
    export_hf(loaded.model, out)
    files = hf_tokenizer_files(loaded.metadata["tokenizer"], loaded.max_seq_len)
    for name, content in files.items():
        (out / name).write_bytes(content)
    return loaded, out


def harness_requests(task_paths: list[Path], limit: int | None, loaded):
    """[(task, id, choice index, context, continuation)] for every choice of every item that
    fits the model (the harness asserts on a continuation longer than its max length; llm-eval
    skips and names those items, so both leave them out here)."""
    from llm_eval import load_tasks
    from llm_eval.multiple_choice import prepare

    out = []
    for path in task_paths:
        prepared = prepare(loaded.tokenizer, load_tasks(path)[:limit], loaded.max_seq_len)
        for item in prepared.items:
            for k, (ctx, cont) in enumerate(zip(item.contexts, item.choices, strict=True)):
                out.append((item.task, str(item.id), k, ctx, cont))
    return out


def run_harness(hf_dir: Path, requests, batch_size: int):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    # no add_bos_token: the exported tokenizer prepends EOS itself
    lm = HFLM(pretrained=str(hf_dir), batch_size=batch_size, device="cpu")
    instances = [
        Instance("loglikelihood", doc={}, arguments=(ctx, cont), idx=i)
        for i, (_, _, _, ctx, cont) in enumerate(requests)
    ]
    start = _clock()
    results = lm.loglikelihood(instances, disable_tqdm=True)
    seconds = _since(start)
    return {r[:3]: ll for r, (ll, _) in zip(requests, results, strict=True)}, seconds


def run_ours_hf(hf_dir: Path, task_paths, limit, batch_size, out_dir: Path):
    """llm-eval scoring the exported model through its ``hf:`` adapter (a public model's path)."""
    from llm_eval.adapters import load_model

    loaded = load_model(f"hf:{hf_dir}")
    assert loaded.metadata["packed"], "the probe refused packing for the exported model"
    return run_ours(loaded, task_paths, limit, batch_size, None, out_dir)


def run_ours(loaded, task_paths, limit, batch_size, packed, out_dir: Path):
    from llm_eval import run_suite

    start = _clock()
    run_suite(
        loaded.model,
        loaded.tokenizer,
        task_paths,
        max_seq_len=loaded.max_seq_len,  # the harness truncates to the model's length too
        limit=limit,
        batch_size=batch_size,
        device="cpu",
        packed=packed,
        output_dir=out_dir,
        progress=False,
    )
    seconds = _since(start)
    lls = {}
    for path in out_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if "skipped" in r:
                continue
            values = r["loglikelihoods"] if "loglikelihoods" in r else [r["loglikelihood"]]
            for k, ll in enumerate(values):
                lls[(r["task"], str(r["id"]), k)] = ll
    return lls, seconds


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU seconds of this process) since ``start``: the scoring loop only, model
    loading excluded on both sides."""
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def measure(loaded, hf_dir: Path, paths, requests, args, tmp: Path):
    """Alternate every scorer at every batch size ``repeats`` times (the machine is shared,
    so its load drifts during a run); keep each one's fastest pass. Returns (times, ours,
    theirs): {(scorer, batch): [(wall, cpu)]}, and one pass's log-likelihoods of each side."""
    scorers = {
        "harness": lambda bs: run_harness(hf_dir, requests, bs),
        "packed": lambda bs: run_ours(loaded, paths, args.limit, bs, None, tmp / "a"),
        "plain": lambda bs: run_ours(loaded, paths, args.limit, bs, False, tmp / "b"),
        "hf": lambda bs: run_ours_hf(hf_dir, paths, args.limit, bs, tmp / "c"),
    }
    scorers = {name: fn for name, fn in scorers.items() if name in args.scorers}
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    lls: dict[str, dict] = {}
    for _ in range(args.repeats):
        for bs in args.batch_sizes:
            for name, scorer in scorers.items():
                lls[name], seconds = scorer(bs)
                times.setdefault((name, bs), []).append(seconds)
            print(_passes(times), flush=True)
    return times, lls


def _passes(times) -> dict[str, list[float]]:
    return {f"{name}@{bs}": [round(w, 2) for w, _ in v] for (name, bs), v in times.items()}


LABELS = {
    "harness": "lm-evaluation-harness 0.4.13 (HFLM, exported model)",
    "packed": "llm-eval, contexts packed (default)",
    "plain": "llm-eval, one row per request (`--no-pack`)",
    "hf": "llm-eval on the exported model via `hf:` (packed)",
}


def table(times, n: int) -> tuple[list[str], float, float]:
    """Rows per (scorer, batch size): the fastest and the median pass; speed-ups against the
    harness's fastest batch size. Also returns the median wall seconds of our best batch size
    and of the harness's (the headline: a lucky pass moves a minimum, not a median)."""
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    harness = min(w for (name, _), (w, _) in best.items() if name == "harness")
    harness_cpu = min(c for (name, _), (_, c) in best.items() if name == "harness")
    rows = [
        "| scorer | batch | seconds | CPU seconds | median seconds | requests/s | speed-up "
        "(wall / CPU) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = list(LABELS)
    for (name, bs), (wall, cpu) in sorted(
        best.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])
    ):
        rows.append(
            f"| {LABELS[name]} | {bs} | {wall:.2f} | {cpu:.2f} | {median[(name, bs)]:.2f} | "
            f"{n / wall:.0f} | {harness / wall:.2f} / {harness_cpu / cpu:.2f} |"
        )
    ours = min(m for (name, _), m in median.items() if name == "packed")
    theirs = min(m for (name, _), m in median.items() if name == "harness")
    return rows, ours, theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/sample", help="run directory or checkpoint")
    parser.add_argument("--tasks", nargs="+", default=None, help="task files (default: sample)")
    parser.add_argument("--limit", type=int, default=None, help="items per task")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating passes per scorer")
    parser.add_argument(
        "--scorers", nargs="+", choices=list(LABELS), default=list(LABELS),
        help="harness and packed at least (the headline compares them)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None, help="table path (default: results/harness-<cpu>.md)"
    )
    args = parser.parse_args()
    if not {"harness", "packed"} <= set(args.scorers):
        parser.error("--scorers must include harness and packed")
    torch.set_num_threads(args.threads)
    paths = [Path(p) for p in args.tasks] if args.tasks else [
        ROOT / "data" / "sample" / "eval" / f"{t}.jsonl.gz" for t in TASKS
    ]  # fmt: skip
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        loaded, hf_dir = export(args.run, Path(tmp) / "hf")
        requests = harness_requests(paths, args.limit, loaded)
        times, lls = measure(loaded, hf_dir, paths, requests, args, Path(tmp))
    load_after = os.getloadavg()
    rows, lines = compare(requests, lls["harness"], lls["packed"])
    hf_lines = compare(requests, lls["harness"], lls["hf"])[1] if "hf" in lls else ["(not run)"]
    n = len(requests)
    speed_rows, ours, harness = table(times, n)
    device = device_name(torch.device("cpu"))
    meta = header(device, [("load average before / after", f"{load_before} / {load_after}")])
    text = "\n".join(
        [
            "# llm-eval vs lm-evaluation-harness (CPU, one thread)",
            "",
            *[f"- {k}: {v}" for k, v in meta],
            f"- model: {loaded.metadata['model']} ({loaded.metadata['params']:,} parameters), "
            f"{n} requests from {len(paths)} task files "
            f"({', '.join(p.name for p in paths)}, {args.limit or 'all'} items each); "
            f"fastest of {args.repeats} alternating "
            "passes per scorer and batch size (wall and CPU seconds of the same pass; CPU "
            "seconds count this process only, so they are the fairer number on a shared machine)",
            f"- all passes (wall s): {_passes(times)}",
            "- the machine is shared with other jobs: compare rows of one table, not across tables",
            "",
            f"**llm-eval {harness / ours:.2f}x lm-evaluation-harness** (median wall seconds of "
            f"the passes, each at its fastest batch size: {ours:.2f} s against {harness:.2f} s).",
            "",
            *speed_rows,
            "",
            "Log-likelihoods, llm-eval (our checkpoint) vs the harness (exported model):",
            "",
            *lines,
            "",
            "| task | choices | max abs log-likelihood difference (nats) | same argmax |",
            "| --- | ---: | ---: | ---: |",
            *rows,
            "",
            "llm-eval through `hf:` on the exported model vs the harness on the same files:",
            "",
            *hf_lines,
            "",
        ]
    )
    out = Path(args.out) if args.out else (
        ROOT / "benchmarks" / "eval" / "results" / f"harness-{device_slug(torch.device('cpu'))}.md"
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}")
    return 0


def compare(requests, theirs: dict, ours: dict):
    """Per task: choices compared, the largest |difference| and how often argmax agrees."""
    per_task: dict[str, list[float]] = {}
    items: dict[tuple[str, str], list[tuple[float, float]]] = {}
    missing = 0
    for task, item, k, _, _ in requests:
        if (task, item, k) not in ours:
            missing += 1  # skipped by llm-eval (too long)
            continue
        a, b = ours[(task, item, k)], theirs[(task, item, k)]
        per_task.setdefault(task, []).append(abs(a - b))
        items.setdefault((task, item), []).append((a, b))
    rows = []
    for task, diffs in sorted(per_task.items()):
        pairs = [v for (t, _), v in items.items() if t == task]
        same = sum(
            max(range(len(p)), key=lambda i: p[i][0]) == max(range(len(p)), key=lambda i: p[i][1])
            for p in pairs
        )
        rows.append(f"| {task} | {len(diffs)} | {max(diffs):.2e} | {same}/{len(pairs)} |")
    worst = max(d for diffs in per_task.values() for d in diffs)
    lines = [f"Largest difference over all choices: {worst:.2e} nats; {missing} not compared."]
    return rows, lines


if __name__ == "__main__":
    sys.exit(main())
