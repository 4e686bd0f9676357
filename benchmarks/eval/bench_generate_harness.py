"""A generate-until task: llm-eval against lm-evaluation-harness's ``generate_until``, same
model and items, one CPU thread.

The model is the ``debug`` preset with a byte-level BPE trained here on the sample books
(random init, seed 0; or ``--run`` a trained run), exported with ``llm_model.hf.export_hf``
next to the Hugging Face tokenizer files of ``llm_formats.tokenizer.hf_tokenizer_files`` (which
prepend EOS, as llm-eval does). The items are the first ``--limit`` of a task file asked as
generate-until (`TaskSpec(kind="generate")`: the gold context, the gold answer's text); both
generate greedily until a stop string or ``--max-tokens``. The script checks that every
generated string is the same, scores both with llm-eval's answer metrics, and times each
(tokenization, generation and the cut at stop strings; model loading in neither),
alternating. lm-eval is installed for this script only:

    uv run --with lm-eval==0.4.13 --with "huggingface-hub>=0.34,<1" --with "accelerate>=1,<2" \\
        python -m benchmarks.eval.bench_generate_harness

Writes ``benchmarks/eval/results/harness-generate-<cpu>.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import dataclasses
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, device_name, device_slug, header
from llm_formats.atomic import atomic_write_text

SAMPLE = ROOT / "data" / "sample"


def build(tmp: Path, run: str | None):
    """(our LoadedModel, HF directory)."""
    from llm_eval.adapters import LoadedModel
    from llm_formats.tokenizer import hf_tokenizer_files
    from llm_model import Transformer, get_preset
    from llm_model.hf import export_hf

    if run:
        from pretrain.stages import eval_model

        loaded = eval_model(run)
        tok_path = loaded.metadata["tokenizer"]
    else:
        from llm_tokenize import TokenizerConfig, train_tokenizer

        with gzip.open(SAMPLE / "books" / "shakespeare.jsonl.gz", "rt") as f:
            texts = [json.loads(line)["text"] for line in f]
        tok = train_tokenizer(texts[:3], TokenizerConfig(vocab_size=4096, show_progress=False))
        tok_path = tok.save(tmp / "tokenizer.json")
        config = dataclasses.replace(get_preset("debug"), vocab_size=tok.vocab_size)
        model = Transformer(config)
        model.init_weights(seed=0)
        loaded = LoadedModel(model=model.eval(), tokenizer=tok, max_seq_len=config.max_seq_len)
    eos = loaded.tokenizer.eos_id
    out = tmp / "hf"
    export_hf(loaded.model, out, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    roles = None if run else {"eos": loaded.tokenizer.decode([eos])}
    for name, content in hf_tokenizer_files(tok_path, loaded.max_seq_len, roles).items():
        (out / name).write_bytes(content)
    return loaded, out


def run_ours(loaded, spec, limit, batch_size):
    from llm_eval.generative import evaluate_generative
    from llm_eval.task_spec import spec_items

    start = time.perf_counter(), time.process_time()
    _, _, items = spec_items(spec, limit)
    records = evaluate_generative(
        loaded.model, loaded.tokenizer, items, stop=spec.stop, max_tokens=spec.max_tokens,
        max_seq_len=loaded.max_seq_len, batch_size=batch_size, device="cpu",
    )  # fmt: skip
    seconds = time.perf_counter() - start[0], time.process_time() - start[1]
    return [r["generation"] for r in records], [r["answers"] for r in records], seconds


def harness_model(hf_dir: Path, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    # add_bos_token: the exported tokenizer's post-processor prepends EOS when special tokens
    # are added (the harness adds none otherwise); checked against ours below
    return HFLM(pretrained=str(hf_dir), batch_size=batch_size, device="cpu", add_bos_token=True)


def run_harness(lm, spec, prompts):
    from lm_eval.api.instance import Instance

    kwargs = {"until": list(spec.stop), "max_gen_toks": spec.max_tokens, "do_sample": False}
    instances = [
        Instance("generate_until", doc={}, arguments=(p, dict(kwargs)), idx=i)
        for i, p in enumerate(prompts)
    ]
    start = time.perf_counter(), time.process_time()
    out = lm.generate_until(instances, disable_tqdm=True)
    return out, (time.perf_counter() - start[0], time.process_time() - start[1])


def main() -> int:
    from llm_eval.answers import ANSWER_METRICS
    from llm_eval.prompts import answer_prompt
    from llm_eval.task_spec import TaskSpec, spec_items

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default=str(SAMPLE / "eval" / "sciq.jsonl.gz"))
    parser.add_argument("--run", default=None, help="a trained run (default: random debug)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = TaskSpec(path=args.task, kind="generate", stop=("\n", "."), max_tokens=args.max_tokens)
    _, _, items = spec_items(spec, args.limit)
    prompts = [answer_prompt(i)[0] for i in items]
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        loaded, hf_dir = build(Path(tmp), args.run)
        lm = harness_model(hf_dir, args.batch_size)
        theirs_ids = lm.tok_batch_encode(prompts[:1])[0][0].tolist()
        ours_ids = [loaded.tokenizer.eos_id, *loaded.tokenizer.encode_batch(prompts[:1])[0]]
        assert theirs_ids[-len(ours_ids) :] == ours_ids, (theirs_ids, ours_ids)
        times = {"llm-eval": [], "harness": []}
        for _ in range(args.passes):
            ours, answers, t = run_ours(loaded, spec, args.limit, args.batch_size)
            times["llm-eval"].append(t)
            theirs, t = run_harness(lm, spec, prompts)
            times["harness"].append(t)
    loads.append(os.getloadavg())
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    text = report(args, spec, loaded, times, ours, theirs, answers, same, loads, ANSWER_METRICS)
    out = ROOT / "benchmarks" / "eval" / "results"
    out = out / f"harness-generate-{device_slug(torch.device('cpu'))}.md"
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}")
    return 0 if same == len(ours) else 1


def report(args, spec, loaded, times, ours, theirs, answers, same, loads, metrics) -> str:
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    rows = []
    for name, texts in (("llm-eval", ours), ("harness", theirs)):
        scores = [
            sum(fn(t, a) for t, a in zip(texts, answers, strict=True)) / len(texts)
            for fn in metrics.values()
        ]
        rows.append(
            f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} | "
            + " | ".join(f"{s:.4f}" for s in scores)
            + f" | {', '.join(f'{t[0]:.2f}' for t in times[name])} |"
        )
    params = sum(p.numel() for p in loaded.model.parameters())
    meta = header(device_name(torch.device("cpu")),
                  [("load average before / after", f"{loads[0]} / {loads[1]}")])  # fmt: skip
    return "\n".join([
        "# Generate-until: llm-eval vs lm-evaluation-harness 0.4.13 (CPU, one thread)",
        "",
        *[f"- {k}: {v}" for k, v in meta],
        f"- model: {args.run or 'debug preset, random init (seed 0)'} ({params:,} parameters), "
        f"exported with `export_hf`; items: the first {len(ours)} of `{Path(args.task).name}` "
        f"as generate-until (gold answer text), stop {list(spec.stop)}, at most "
        f"{spec.max_tokens} tokens, greedy, batch {args.batch_size}; median of {args.passes} "
        "alternating passes",
        "- the machine is shared with other jobs: compare rows of one table, not across tables",
        "",
        f"**llm-eval {wall['harness'] / wall['llm-eval']:.2f}x the harness** by wall time "
        f"({cpu['harness'] / cpu['llm-eval']:.2f}x by CPU time); identical generated strings: "
        f"{same}/{len(ours)}.",
        "",
        "| | median wall s | median CPU s | exact_match | f1 | contains | passes (wall s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
