"""Generation: llm-eval's engine against Hugging Face ``generate`` on the same model, one thread.

Our Transformer (a preset, random init with a fixed seed) is exported with
``llm_model.hf.export_hf`` and loaded back by transformers. The same prompts (random token ids
of random lengths, seeded) are decoded greedily in the same batches, every row to exactly
``--new-tokens`` tokens (no EOS: the same work for every decoder), three ways, alternating:

- ``engine``: `llm_eval.generation.generate` on our Transformer (its preallocated KV cache);
- ``engine (hf)``: the same engine on the exported model (`llm_eval.hf`, its ``DynamicCache``);
- ``hf generate``: ``model.generate(..., do_sample=False)`` on the exported model, the prompts
  of each batch left-padded with an attention mask.

The script checks that all three give the same tokens for every prompt. Tokens/s counts
generated tokens over the wall time of the whole pass (prefill included), median of
``--passes`` (and this process's CPU seconds, which other jobs on a shared machine disturb
less). Writes ``benchmarks/results/generate-<cpu>.md``:

    uv run python -m benchmarks.eval.bench_generate
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS, device_name, device_slug, header, parse_preset
from llm_formats.atomic import atomic_write_text


class _Ids:
    """The engine's tokenizer needs: no EOS id ever generated (-1), decode never called."""

    eos_id = -1
    vocab_size = 0

    def decode(self, ids):  # pragma: no cover - no stop strings in this benchmark
        return ""


def build(spec: str, tmp: Path):
    """(our Transformer, the exported transformers model), both float32 in eval mode."""
    from transformers import AutoModelForCausalLM

    from llm_model import Transformer, get_preset
    from llm_model.hf import export_hf

    name, overrides = parse_preset(spec)
    config = get_preset(name)
    if overrides:
        import dataclasses

        config = dataclasses.replace(config, **overrides)
    with torch.device("meta"):
        model = Transformer(config)
    model.to_empty(device="cpu")
    model.init_weights(seed=0)
    model.eval()
    export_hf(model, tmp / "hf", bos_token_id=0, eos_token_id=0, pad_token_id=0)
    hf = AutoModelForCausalLM.from_pretrained(tmp / "hf", torch_dtype=torch.float32).eval()
    return model, hf


def prompts_for(n: int, lo: int, hi: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def run_engine(model, prompts, args) -> list[list[int]]:
    from llm_eval.generation import generate

    out = generate(
        model, _Ids(), prompts, max_tokens=args.new_tokens, max_seq_len=args.max_seq_len,
        batch_size=args.batch_size,
    )  # fmt: skip
    return [g.tokens for g in out]


def run_hf_generate(hf, prompts, args) -> list[list[int]]:
    """transformers' generate, batch by batch in the engine's order (longest prompts first)."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: dict[int, list[int]] = {}
    with torch.inference_mode():
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            T = max(len(prompts[i]) for i in batch)
            ids = torch.zeros(len(batch), T, dtype=torch.long)
            mask = torch.zeros(len(batch), T, dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, T - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[row, T - len(prompts[i]) :] = 1
            gen = hf.generate(
                ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None,
                pad_token_id=0,
            )  # fmt: skip
            for row, i in enumerate(batch):
                out[i] = gen[row, T:].tolist()
    return [out[i] for i in range(len(prompts))]


def measure(model, hf, prompts, args):
    """{decoder: [wall seconds per pass]}, the same in this process's CPU seconds, and each
    decoder's tokens (of its last pass)."""
    from llm_eval.hf import HFCausalLM

    wrapped = HFCausalLM(hf)
    runners = {
        "engine": lambda: run_engine(model, prompts, args),
        "engine (hf)": lambda: run_engine(wrapped, prompts, args),
        "hf generate": lambda: run_hf_generate(hf, prompts, args),
    }
    times = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    tokens = {}
    for name, run in runners.items():  # warm-up pass, not timed
        tokens[name] = run()
    for _ in range(args.passes):
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            tokens[name] = run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return times, cpu, tokens


def report(times, cpu, tokens, prompts, model, args, loads) -> str:
    n_new = len(prompts) * args.new_tokens
    same = {name: tokens[name] == tokens["hf generate"] for name in tokens}
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    rows = [
        f"| {name} | {med[name]:.3f} | {n_new / med[name]:,.0f} | "
        f"{med['hf generate'] / med[name]:.2f}x | {med_cpu[name]:.3f} | "
        f"{med_cpu['hf generate'] / med_cpu[name]:.2f}x | {'yes' if same[name] else '**no**'} | "
        f"{', '.join(f'{t:.3f}' for t in times[name])} |"
        for name in times
    ]
    meta = header(device_name(torch.device("cpu")),
                  [("load average before / after", f"{loads[0]} / {loads[1]}")])  # fmt: skip
    ratio = med["hf generate"] / med["engine"]
    ratio_cpu = med_cpu["hf generate"] / med_cpu["engine"]
    return "\n".join([
        "# Generation: llm-eval's engine vs Hugging Face `generate` (CPU, one thread)",
        "",
        *[f"- {k}: {v}" for k, v in meta],
        f"- model: preset `{args.preset}` ({model.num_params():,} parameters), random init "
        "(seed 0), float32; the HF side is its `export_hf` export",
        f"- {len(prompts)} prompts of {args.min_len}-{args.max_len} tokens, batch "
        f"{args.batch_size}, greedy, {args.new_tokens} new tokens each ({n_new:,} in all); "
        f"median of {args.passes} alternating passes after one warm-up pass",
        "- the machine is shared with other jobs: compare rows of one table, not across tables",
        "",
        f"**engine {ratio:.2f}x Hugging Face generate** by wall time ({ratio_cpu:.2f}x by this "
        "process's CPU time, the fairer number on a shared machine); same model, batches and "
        f"prompts; identical greedy tokens: {'yes' if all(same.values()) else 'NO'}.",
        "",
        "| decoder | median wall s | tokens/s | vs hf generate | median CPU s | vs hf (CPU) "
        "| same tokens | passes (wall s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | :---: | --- |",
        *rows,
        "",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="debug", help="llm_model preset[:field=value,...]")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="default benchmarks/results/generate-<cpu>.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model, hf = build(args.preset, Path(tmp))
        args.max_seq_len = model.config.max_seq_len
        prompts = prompts_for(args.prompts, args.min_len, args.max_len, model.config.vocab_size)
        times, cpu, tokens = measure(model, hf, prompts, args)
    text = report(times, cpu, tokens, prompts, model, args, (load_before, os.getloadavg()))
    out = (
        Path(args.out) if args.out else RESULTS / f"generate-{device_slug(torch.device('cpu'))}.md"
    )
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}")
    same = all(t == tokens["hf generate"] for t in tokens.values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
