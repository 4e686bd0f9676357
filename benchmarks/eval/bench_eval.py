"""llm-eval against lm-evaluation-harness: same exported model, same items, one CPU thread.

Our checkpoint is exported with ``llm_model.hf.export_hf`` (Llama layout) next to a Hugging Face
tokenizer built from the run's ``tokenizer.json`` that prepends the end-of-text token, as
llm-eval does. Both score every (context, choice) pair of the task files; the harness's
``HFLM.loglikelihood`` loop and llm-eval's ``run_suite`` (tokenization included in both) are
timed, and the log-likelihoods compared item by item. lm-eval is installed for this script only:

    uv run --with lm-eval==0.4.13 python benchmarks/eval/bench_eval.py --run runs/sample

Writes ``benchmarks/eval/results/harness-<cpu>.md`` with date, machine and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import ROOT, device_name, device_slug, header, write_atomic  # noqa: E402

TASKS = ["arc_easy", "hellaswag", "lambada", "piqa", "sciq"]


def export(run: str, out: Path):
    """(our LoadedModel, HF directory): the checkpoint as a Llama model + an EOS-prefixing
    fast tokenizer."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    from llm_model.hf import export_hf
    from pretrain.stages import eval_model

    loaded = eval_model(run)
    export_hf(loaded.model, out)
    eos = loaded.tokenizer.eos_token
    raw = Tokenizer.from_file(loaded.metadata["tokenizer"])
    raw.post_processor = processors.TemplateProcessing(
        single=f"{eos} $A", special_tokens=[(eos, loaded.tokenizer.eos_id)]
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=eos, bos_token=eos)
    hf_tok.save_pretrained(out)
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

    lm = HFLM(pretrained=str(hf_dir), batch_size=batch_size, device="cpu", add_bos_token=True)
    instances = [
        Instance("loglikelihood", doc={}, arguments=(ctx, cont), idx=i)
        for i, (_, _, _, ctx, cont) in enumerate(requests)
    ]
    start = time.perf_counter()
    results = lm.loglikelihood(instances, disable_tqdm=True)
    seconds = time.perf_counter() - start
    return {r[:3]: ll for r, (ll, _) in zip(requests, results, strict=True)}, seconds


def run_ours(loaded, task_paths, limit, batch_size, packed, out_dir: Path):
    from llm_eval import run_suite

    start = time.perf_counter()
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
    seconds = time.perf_counter() - start
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/sample", help="run directory or checkpoint")
    parser.add_argument("--tasks", nargs="+", default=None, help="task files (default: sample)")
    parser.add_argument("--limit", type=int, default=None, help="items per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating passes, min kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = [Path(p) for p in args.tasks] if args.tasks else [
        ROOT / "data" / "sample" / "eval" / f"{t}.jsonl.gz" for t in TASKS
    ]  # fmt: skip
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        loaded, hf_dir = export(args.run, Path(tmp) / "hf")
        requests = harness_requests(paths, args.limit, loaded)
        # alternate the scorers and keep each one's fastest pass: the machine is shared, so
        # its load drifts during a run
        times: dict[str, list[float]] = {"ours": [], "plain": [], "harness": []}
        for _ in range(args.repeats):
            ours, t = run_ours(loaded, paths, args.limit, args.batch_size, None, Path(tmp) / "a")
            times["ours"].append(t)
            _, t = run_ours(loaded, paths, args.limit, args.batch_size, False, Path(tmp) / "b")
            times["plain"].append(t)
            theirs, t = run_harness(hf_dir, requests, args.batch_size)
            times["harness"].append(t)
            print({k: [round(x, 1) for x in v] for k, v in times.items()}, flush=True)
        t_ours, t_plain, t_harness = (min(times[k]) for k in ("ours", "plain", "harness"))
    load_after = os.getloadavg()
    rows, lines = compare(requests, theirs, ours)
    n = len(requests)
    table = [
        "| scorer | seconds | requests/s | speed-up vs harness |",
        "| --- | ---: | ---: | ---: |",
        f"| lm-evaluation-harness 0.4.13 (HFLM, exported model) | {t_harness:.1f} | "
        f"{n / t_harness:.0f} | 1.00 |",
        f"| llm-eval, contexts packed (default) | {t_ours:.1f} | {n / t_ours:.0f} | "
        f"{t_harness / t_ours:.2f} |",
        f"| llm-eval, one row per request (`--no-pack`) | {t_plain:.1f} | {n / t_plain:.0f} | "
        f"{t_harness / t_plain:.2f} |",
    ]
    device = device_name(torch.device("cpu"))
    meta = header(device, [("load average before / after", f"{load_before} / {load_after}")])
    text = "\n".join(
        [
            "# llm-eval vs lm-evaluation-harness (CPU, one thread)",
            "",
            *[f"- {k}: {v}" for k, v in meta],
            f"- model: {loaded.metadata['model']} ({loaded.metadata['params']:,} parameters), "
            f"batch size {args.batch_size}, {n} requests from {len(paths)} task files; "
            f"fastest of {args.repeats} alternating passes per scorer "
            f"(all passes, seconds: {times})",
            "- the machine is shared with other jobs: compare rows of one table, not across tables",
            "",
            *table,
            "",
            *lines,
            "",
            "| task | choices | max abs log-likelihood difference (nats) | same argmax |",
            "| --- | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )
    out = (
        ROOT / "benchmarks" / "eval" / "results" / f"harness-{device_slug(torch.device('cpu'))}.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
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
