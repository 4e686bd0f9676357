"""The short markdown report a run ends with: what each stage kept, made and measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_formats import rundir as layout
from llm_formats.atomic import atomic_write_text
from llm_formats.metrics import read_metrics
from pretrain.rundir import read_run_json


def write_report(run_dir: Path) -> Path:
    """Gather the stage summaries under `run_dir` into `report.md` and return its path."""
    stages = read_run_json(run_dir / layout.STAGES)  # a damaged file names itself
    lines = [f"# Run `{run_dir.name}`", ""]
    lines += _curation_section(stages.get("curate", {}))
    lines += _tokens_section(stages.get("tokenizer", {}), stages.get("shards", {}))
    lines += _mixture_section(stages.get("train", {}))
    lines += _training_section(stages.get("train", {}), read_metrics(run_dir / layout.METRICS))
    lines += _eval_section(stages.get("eval", {}))
    lines += ["## Time per stage", "", "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {s.get('seconds', 0):.1f} |" for name, s in stages.items()]
    return atomic_write_text(run_dir / layout.REPORT, "\n".join(lines) + "\n")


def _curation_section(curate: dict[str, Any]) -> list[str]:
    counts = curate.get("counts", {})
    if not counts:
        return []
    lines = ["## Curation: documents per stage", ""]
    lines.append("| source | stage | in | kept | removed | removed by reason | counted |")
    lines.append("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for source, steps in counts.items():
        for step, c in steps.items():
            reasons = ", ".join(f"{k} {v}" for k, v in c.get("removed_by", {}).items())
            counted = ", ".join(f"{k} {v}" for k, v in c.get("counted", {}).items())
            lines.append(
                f"| {source} | {step} | {c.get('in', '')} | {c.get('kept', '')} | "
                f"{c.get('removed', '')} | {reasons} | {counted} |"
            )
    kept = curate.get("kept_per_group", {})
    if kept:
        lines += [
            "",
            "Kept per language (web) or source: "
            + ", ".join(f"{group} {n}" for group, n in kept.items()),
        ]
    return lines + [""]


def _tokens_section(tok: dict[str, Any], shards: dict[str, Any]) -> list[str]:
    lines = ["## Tokenizer and shards", ""]
    if tok:
        lines.append(
            f"- vocabulary: {tok.get('vocab_size')} tokens, "
            f"{tok.get('bytes_per_token', float('nan')):.3f} bytes/token on curated text; "
            f"settings, training files and hashes in `tokenizer_card.json`"
        )
    if "round_trip_failures" in tok:
        failed = tok["round_trip_failures"]
        lines.append(
            "- round trip decode(encode(text)) == text: "
            + ("every curated document" if failed == 0 else f"{failed} documents DIFFER")
        )
    groups = {**tok.get("per_source", {}), **tok.get("per_language", {})}
    if groups:
        lines += [
            "",
            "| source / language | docs | bytes/token | fertility | vocabulary used | "
            "byte fallback |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for group, g in groups.items():
            unit = " /char" if g.get("fertility_unit") == "char" else ""
            lines.append(
                f"| {group} | {g.get('docs')} | {_fmt(g.get('bytes_per_token'))} | "
                f"{_fmt(g.get('fertility'))}{unit} | {_pct(g.get('vocab_used'))} | "
                f"{_pct(g.get('byte_fallback'))} |"
            )
        lines += ["", "Fertility: tokens per whitespace word, per character (/char) in ja, zh.", ""]
    for source, s in shards.get("sources", {}).items():
        lines.append(
            f"- {source}: {s.get('documents')} documents, {s.get('tokens')} tokens, "
            f"{s.get('samples')} samples"
        )
    if shards.get("heldout_documents") is not None:
        lines.append(f"- held out for evaluation: {shards['heldout_documents']} documents")
    return lines + [""]


def _training_section(train: dict[str, Any], metrics: list[dict[str, Any]]) -> list[str]:
    logged = [m for m in metrics if m.get("loss") is not None]
    if not train and not logged:
        return []
    lines = ["## Training", ""]
    if "params" in train:
        lines.append(
            f"- model: {train['params']:,} parameters, {train.get('flops_per_token', 0):.3g} "
            f"FLOPs/token (6N + 12LdT), on {train.get('device')}"
        )
    if "init_from" in train:
        lines.append(f"- started from: {_init_from(train['init_from'])}")
    if logged:
        first, last = logged[0], logged[-1]
        lines.append(
            f"- loss: {first['loss']:.3f} at step {first['step']} -> {last['loss']:.3f} at step "
            f"{last['step']}"
        )
        if last.get("tokens_per_s"):
            lines.append(f"- throughput: {last['tokens_per_s']:,.0f} tokens/s")
    for key in ("steps", "tokens"):
        if key in train:
            lines.append(f"- {key}: {train[key]:,}")
    lines.append("- loss curve: `loss.png`")
    return lines + [""]


def _init_from(record: dict[str, Any]) -> str:
    """Where a warm-started run's first weights came from (``train.init_from``)."""
    if record.get("kind") == "hf":
        sha = record["config_sha256"][:12]
        return f"`{record['path']}` (Hugging Face, config.json sha256 {sha})"
    return (
        f"`{record['path']}` (step {record['step']}, manifest sha256 "
        f"{record['manifest_sha256'][:12]})"
    )


def _mixture_section(train: dict[str, Any]) -> list[str]:
    if "mixture" not in train:
        return []
    from llm_data.training_data.mixture import MixtureTable

    return ["## Data mixture", "", MixtureTable.from_dict(train["mixture"]).markdown()]


def _eval_section(ev: dict[str, Any]) -> list[str]:
    if not ev:
        return []
    lines = ["## Evaluation", ""]
    if "checkpoint" in ev:
        lines.append(f"- scored checkpoint `{ev['checkpoint']}` (step {ev.get('step')})")
    if "precision" in ev:
        lines.append(f"- weights scored in {ev['precision']}")
    if "bpb" in ev:
        lines.append(f"- bits per byte on held-out text: {ev['bpb']:.3f}")
    for name, bpb in ev.get("bpb_sets", {}).items():
        lines.append(f"- bits per byte, {name}: {bpb:.3f}")
    for skip in ev.get("skipped", []):
        lines.append(f"- skipped {skip['task']}/{skip['id']}: {skip['reason']}")
    if "per_item" in ev:
        lines.append(f"- per-item results: `{ev['per_item']}/<task>.jsonl`")
    agg = ev.get("aggregate", {})
    if "macro_avg" in agg:
        lines.append(
            f"- macro average of the {int(agg['tasks'])} tasks' scores: "
            f"{_fmt(agg['macro_avg'], agg['macro_avg_stderr'])}"
        )
    for base, best in agg.get("best_of_formulations", {}).items():
        lines.append(
            f"- {base}, best of cloze and MC letters: {best['score']:.3f} ({best['task']})"
        )
    tasks = ev.get("tasks", {})
    if tasks:
        lines += ["", "| task | items | score | acc | acc_norm | exact_match |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for task, m in tasks.items():
            cells = [_fmt(m.get(k), m.get(f"{k}_stderr"))
                     for k in ("score", "acc", "acc_norm", "exact_match")]  # fmt: skip
            lines.append(f"| {task} | {int(m.get('n', 0))} | {' | '.join(cells)} |")
    return lines + [""]


def _fmt(x: Any, stderr: Any = None) -> str:
    if not isinstance(x, float):
        return ""
    return f"{x:.3f} ± {stderr:.3f}" if isinstance(stderr, float) else f"{x:.3f}"


def _pct(x: Any) -> str:
    return f"{x:.1%}" if isinstance(x, float) else ""
