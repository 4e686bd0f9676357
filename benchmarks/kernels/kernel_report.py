"""Rows, the issue's targets, and the Markdown / CSV / PNG result files of the kernel benchmark."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("bench_kernels")


@dataclass
class Row:
    op: str
    shape: str
    provider: str
    mode: str
    ok: bool  # output (and input grads for fwd+bwd) match the float64 reference
    max_err: float | None  # None: the provider raised before producing a result
    ms: float | None  # None: timing failed (OOM, error)
    gb_s: float | None
    copy_ratio: float | None
    tflop_s: float | None
    peak_mib: float | None  # None on CPU


@dataclass(frozen=True)
class Target:
    """One of the issue's goals for llm_kernels at one op, shape and mode."""

    op: str
    shape: str
    mode: str
    kind: str  # "speedup": best other ms / ours; "copy": our copy ratio;
    # "memory": our peak / eager's (must be below); "time": our ms / eager's (at most)
    bound: float


TARGETS = [
    *(t for shape in ("16384x4096", "32768x8192") for t in (
        Target("rms_norm", shape, "fwd+bwd", "speedup", 1.15),
        Target("rms_norm", shape, "fwd", "copy", 0.90))),
    Target("swiglu", "16384x11008", "fwd+bwd", "speedup", 1.05),
    Target("swiglu", "16384x11008", "fwd", "copy", 0.90),
    Target("rope", "8x2048x32x128", "fwd+bwd", "speedup", 1.10),
    Target("linear_ce", "16384x4096x128256", "fwd+bwd", "memory", 0.25),
    Target("linear_ce", "16384x4096x128256", "fwd+bwd", "time", 1.00),
]  # fmt: skip
TARGET_SHAPES = {(t.op, t.shape) for t in TARGETS}
OURS = "llm_kernels"


def _find(rows: list[Row], t: Target, provider: str) -> Row | None:
    key = (t.op, t.shape, t.mode, provider)
    return next((r for r in rows if (r.op, r.shape, r.mode, r.provider) == key), None)


def evaluate(t: Target, rows: list[Row]) -> tuple[str, str, str] | None:
    """(measured, required, verdict) for ``t``, or None when its shape was not measured."""
    ours = _find(rows, t, OURS)
    if ours is None:
        return None
    required = {"speedup": f">= {t.bound:.2f}x", "copy": f">= {t.bound:.2f}",
                "memory": f"< {t.bound:.2f}x eager",
                "time": f"<= {t.bound:.2f}x eager"}[t.kind]  # fmt: skip
    if not ours.ok or ours.ms is None:
        return "n/a", required, "invalid: llm_kernels failed or disagrees with the reference"
    if t.kind == "copy":
        value, label = ours.copy_ratio, f"{ours.copy_ratio:.3f} of copy"
    elif t.kind == "speedup":
        others = [r for r in rows if (r.op, r.shape, r.mode) == (t.op, t.shape, t.mode)
                  and r.provider != OURS and r.ok and r.ms is not None]  # fmt: skip
        if not others:
            return "n/a", required, "no other provider measured"
        best = min(others, key=lambda r: r.ms)
        value = best.ms / ours.ms
        label = f"{value:.3f}x (best other: {best.provider} {best.ms:.3g} ms)"
    else:
        eager = _find(rows, t, "eager")
        attr = "peak_mib" if t.kind == "memory" else "ms"
        if eager is None or getattr(eager, attr) is None or getattr(ours, attr) is None:
            return "n/a", required, "no eager measurement"
        value = getattr(ours, attr) / getattr(eager, attr)
        unit = "MiB" if t.kind == "memory" else "ms"
        label = f"{value:.3f}x ({getattr(ours, attr):.4g} vs {getattr(eager, attr):.4g} {unit})"
    return label, required, _verdict(t, value)


def _verdict(t: Target, value: float) -> str:
    if t.kind in ("speedup", "copy"):
        met = value >= t.bound
        gap = (t.bound - value) / t.bound
    else:
        met = value < t.bound if t.kind == "memory" else value <= t.bound
        gap = (value - t.bound) / t.bound
    return "met" if met else f"missed by {gap:.1%}"


def targets_markdown(rows: list[Row]) -> list[str]:
    """The targets table: only targets whose shape was measured."""
    lines = ["## Targets (llm_kernels against the issue's goals)", ""]
    found = [(t, v) for t in TARGETS if (v := evaluate(t, rows)) is not None]
    if not found:
        return [*lines, "None of the target shapes was measured in this run.", ""]
    lines += ["| op | shape | mode | measured | required | result |", "| --- " * 6 + "|"]
    for t, (measured, required, verdict) in found:
        what = {"speedup": "speed-up", "copy": "copy ratio", "memory": "peak memory",
                "time": "time"}[t.kind]  # fmt: skip
        lines.append(f"| {t.op} | {t.shape} | {t.mode} | {what}: {measured} | {required} | "
                     f"{verdict} |")  # fmt: skip
    wrong = sorted({f"{r.provider} ({r.op} {r.shape} {r.mode})" for r in rows if not r.ok})
    note = "; ".join(wrong) if wrong else "none"
    return [*lines, "", f"Providers left out of 'best other' (wrong or failed): {note}.", ""]


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def markdown(rows: list[Row], meta: list[tuple[str, str]], notes: list[str]) -> str:
    fields = list(Row.__dataclass_fields__)
    lines = ["# llm-kernels microbenchmarks (bf16)", "", *(f"- {k}: {v}" for k, v in meta), ""]
    lines += [*notes, "", *targets_markdown(rows), "## All measurements", ""]
    lines += ["| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields)]
    lines += ["| " + " | ".join(_fmt(v) for v in asdict(r).values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[Row], meta: list[tuple[str, str]]) -> str:
    """All fields, after ``# key: value`` provenance lines."""
    buf = io.StringIO()
    buf.write("".join(f"# {k}: {v}\n" for k, v in meta))
    writer = csv.DictWriter(buf, fieldnames=list(Row.__dataclass_fields__))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buf.getvalue()


def plot(rows: list[Row], path: Path, device: str) -> None:
    """Bars of speed-up over eager per op and shape, fwd and fwd+bwd (correct rows only)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
        return
    ms = {(r.op, r.shape, r.mode, r.provider): r.ms for r in rows if r.ok and r.ms}
    keys = sorted({(r.op, r.shape) for r in rows})
    providers = sorted({r.provider for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    width = 0.8 / len(providers)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd"), strict=True):
        for i, p in enumerate(providers):
            speed = [ms.get((op, sh, mode, "eager"), float("nan"))
                     / ms.get((op, sh, mode, p), float("nan")) for op, sh in keys]  # fmt: skip
            ax.bar([k + i * width for k in range(len(keys))], speed, width, label=p)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))])
        ax.set_xticklabels([f"{op}\n{sh}" for op, sh in keys], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{mode}: speed-up over eager ({device})")
        ax.axhline(1.0, color="black", lw=0.5)
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
