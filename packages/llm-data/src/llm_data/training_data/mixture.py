"""Data mixtures: how much of each source to train on, by phase, and the table that says so.

Per source, a mixture gives either a target `proportion` of the samples or a number of `epochs`
(passes over the source's samples), never both. That is mosaicml-streaming's `Stream` weighting:
`proportion` is relative, `repeat` (epochs) absolute, and streaming refuses to mix the two kinds.
Here they mix by the rule streaming uses to turn either into its absolute form, `choose` (exact
sample counts): a phase of a run has a budget of samples (its steps x samples per step); the
sources given in epochs take `round(epochs x samples)` of it, and the sources given a proportion
share what is left by their (normalized) proportions. Without a step budget (an open-ended last
phase), a phase's budget is streaming's default epoch: every sample of its sources once. Each
phase then becomes one streaming epoch of `choose` samples per stream; streaming picks which
samples (whole repeats plus a random remainder per shard) and shuffles them (see `loader.py`).

A schedule is a list of phases by training step (`until_step`, the last one `None` = to the end),
e.g. a different mix for the final annealing phase; a sequence-length schedule trains shorter
sequences first (`SeqLenPhase`). `mixture_table` prints the MPT-style table for a token budget
(source, tokens available, proportion, epochs, tokens used) and warns when a source repeats more
than `max_epochs`. This module needs neither torch nor streaming: plan a mixture without them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from llm_formats.shards import read_shard_stats, source_samples

__all__ = [
    "DEFAULT_MAX_EPOCHS",
    "MixtureConfig",
    "MixturePhase",
    "MixtureTable",
    "ResolvedPhase",
    "SeqLenPhase",
    "mixture_table",
    "resolve_mixture",
]

log = logging.getLogger(__name__)

# Muennighoff et al. 2023, "Scaling Data-Constrained Language Models" (NeurIPS): up to about 4
# epochs, repeated tokens are worth almost as much as fresh ones; past that their value decays
# fast (and is about nil by ~16 epochs). So more than 4 epochs of a source earns a warning.
DEFAULT_MAX_EPOCHS = 4.0


def _check_weights(where: str, kind: str, weights: dict[str, float]) -> None:
    for name, value in weights.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{where}{kind}.{name}={value!r} is invalid: expected a number >= 0")


@dataclass(kw_only=True)
class MixturePhase:
    """The mixture of training steps up to `until_step` (inclusive; `None`: to the end).

    Attributes:
        until_step: last training step of the phase (steps count from 1); `None` for the last.
        proportions: source -> share of the phase's samples (normalized over these sources,
            after the `epochs` sources took theirs); 0 leaves a source out.
        epochs: source -> passes over the source's samples in the phase (2.5: every sample
            twice and half of them a third time); 0 leaves a source out.
    Both maps empty: the mixture's top-level `proportions` / `epochs`, or, if those are empty
    too, every source once per epoch (mixed by size).
    """

    until_step: int | None = None
    proportions: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "" if self.until_step is None else f"schedule phase until_step={self.until_step}: "
        if self.until_step is not None and self.until_step < 1:
            raise ValueError(f"{where}until_step must be >= 1 or null (to the end of the run)")
        _check_weights(where, "proportions", self.proportions)
        _check_weights(where, "epochs", self.epochs)
        given = lambda weights: {s for s, w in weights.items() if w > 0}  # noqa: E731  (0: left out)
        both = sorted(given(self.proportions) & given(self.epochs))
        if both:
            raise ValueError(
                f"{where}sources {both} have both a proportion and epochs; give each source one"
            )
        if (self.proportions or self.epochs) and not any(
            v > 0 for v in [*self.proportions.values(), *self.epochs.values()]
        ):
            raise ValueError(f"{where}every weight is 0; give at least one source a weight > 0")


@dataclass(kw_only=True)
class SeqLenPhase:
    """Train sequences of `seq_len` tokens up to step `until_step` (inclusive).

    The loader cuts each sample into `full seq_len / seq_len` rows, so a batch keeps its tokens
    (and its samples): the batch size grows by the same factor.
    """

    until_step: int
    seq_len: int

    def __post_init__(self) -> None:
        if self.until_step < 1 or self.seq_len < 1:
            raise ValueError(
                f"seq_len phase until_step={self.until_step}, seq_len={self.seq_len}: "
                "both must be >= 1"
            )


@dataclass(kw_only=True)
class MixtureConfig:
    """A run's mixture: one mix (`proportions` / `epochs`) or phases by step (`schedule`).

    Attributes:
        proportions: source -> proportion (one phase for the whole run).
        epochs: source -> epochs over the run (exclusive with `proportions` per source).
        schedule: phases by step instead; a phase that gives neither map uses `proportions` and
            `epochs` (e.g. the usual mix, then an annealing mix).
        seq_len_schedule: shorter sequences first, by step; each `seq_len` must divide the
            loader's; after the last phase the loader's `seq_len`.
        max_epochs: the table warns about sources repeated more often than this.
    """

    proportions: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, float] = field(default_factory=dict)
    schedule: list[MixturePhase] = field(default_factory=list)
    seq_len_schedule: list[SeqLenPhase] = field(default_factory=list)
    max_epochs: float = DEFAULT_MAX_EPOCHS

    def __post_init__(self) -> None:
        MixturePhase(proportions=self.proportions, epochs=self.epochs)  # validates the maps
        self.phases()  # validates the schedule
        _check_increasing("seq_len_schedule", [p.until_step for p in self.seq_len_schedule])
        if not self.max_epochs > 0:
            raise ValueError(f"max_epochs={self.max_epochs!r} is invalid: expected > 0")

    def phases(self) -> list[MixturePhase]:
        """The schedule (phases without a mix take the top-level one), or the one mix as a
        single phase; checked to be in order."""
        default = MixturePhase(proportions=dict(self.proportions), epochs=dict(self.epochs))
        if not self.schedule:
            return [default]
        ends = [p.until_step for p in self.schedule]
        if ends[-1] is not None or None in ends[:-1]:
            raise ValueError(
                f"schedule until_step={ends}: only the last phase, and it must, has "
                "until_step null (to the end of the run)"
            )
        _check_increasing("schedule", ends[:-1])
        return [
            p if p.proportions or p.epochs else replace(default, until_step=p.until_step)
            for p in self.schedule
        ]

    def seq_len_at(self, step: int, seq_len: int) -> int:
        """Sequence length of training step `step` (from 1)."""
        return next((p.seq_len for p in self.seq_len_schedule if step <= p.until_step), seq_len)


def _check_increasing(name: str, ends: list[int]) -> None:
    if any(b <= a for a, b in zip(ends, ends[1:], strict=False)):
        raise ValueError(f"{name} until_step={ends} must increase strictly")


@dataclass(frozen=True)
class ResolvedPhase:
    """A phase in samples: what the loader builds one streaming dataset from.

    Attributes:
        start_step: steps before the phase (its first step is start_step + 1).
        end_step: its last step, or None (to the end).
        choose: samples drawn from each source per streaming epoch of the phase.
        run_samples: samples the run trains in the phase (None without a step budget).
        spec: the phase as configured.
    """

    start_step: int
    end_step: int | None
    choose: dict[str, int]
    run_samples: int | None
    spec: MixturePhase = field(default_factory=MixturePhase)

    @property
    def epoch_size(self) -> int:
        return sum(self.choose.values())

    def to_dict(self) -> dict:
        """JSON-able: the phase as configured and as resolved."""
        return {
            "until_step": self.end_step,
            "proportions": dict(self.spec.proportions),
            "epochs": dict(self.spec.epochs),
            "choose": dict(self.choose),
        }


def resolve_mixture(
    available: dict[str, int],
    mixture: MixtureConfig,
    *,
    samples_per_step: int,
    steps: int | None = None,
) -> list[ResolvedPhase]:
    """Turn proportions and epochs into samples per source and phase (streaming's `choose`).

    Args:
        available: samples per source in the shards (sources with 0 are not drawable).
        mixture: the mixture and its schedule.
        samples_per_step: samples of one training step, all ranks and micro-batches.
        steps: the run's steps (the budget of the last phase); None: open-ended.

    Raises:
        ValueError: a phase names an unknown source or its epochs leave no room for the rest.
    """
    drawable = {name: n for name, n in available.items() if n > 0}
    resolved, start = [], 0
    for i, phase in enumerate(mixture.phases()):
        _check_sources(i, phase, drawable)
        end = phase.until_step
        budget_end = end if end is not None else steps
        budget = (budget_end - start) * samples_per_step if budget_end and budget_end > start else 0
        choose = _choose(i, phase, drawable, budget)
        run = None
        if steps is not None:
            run = max(0, min(end if end is not None else steps, steps) - start) * samples_per_step
        resolved.append(ResolvedPhase(start, end, choose, run, phase))
        start = end if end is not None else start
    return resolved


def _check_sources(i: int, phase: MixturePhase, drawable: dict[str, int]) -> None:
    named = {k for k, v in [*phase.proportions.items(), *phase.epochs.items()] if v > 0}
    unknown = sorted(named - set(drawable))
    if unknown:
        raise ValueError(
            f"mixture phase {i} names unknown sources {unknown} (or sources without samples); "
            f"available: {sorted(drawable)}"
        )


def _choose(i: int, phase: MixturePhase, drawable: dict[str, int], budget: int) -> dict[str, int]:
    """Samples per source for a phase of `budget` samples (0: no budget, streaming's epoch)."""
    if not phase.proportions and not phase.epochs:
        return dict(sorted(drawable.items()))  # by size: every sample once per epoch
    epochs = {s: round(e * drawable[s]) for s, e in sorted(phase.epochs.items()) if e > 0}
    weights = {s: w for s, w in sorted(phase.proportions.items()) if w > 0}
    if not weights:
        return epochs
    if not budget:  # streaming's default epoch size: each sample of the phase's sources once
        budget = sum(drawable[s] for s in [*epochs, *weights])
    left = budget - sum(epochs.values())
    if left < len(weights):
        raise ValueError(
            f"mixture phase {i}: epochs of {sorted(epochs)} take {sum(epochs.values())} samples "
            f"of the phase's {budget}, leaving too few for the proportion sources "
            f"{sorted(weights)}; lower the epochs or train more steps"
        )
    return epochs | _split(left, weights)


def _split(total: int, weights: dict[str, float]) -> dict[str, int]:
    """`total` split by weights into integers (largest remainder; ties by name): exact counts,
    so the table shows what is drawn (streaming spreads its shortfall at random instead)."""
    norm = sum(weights.values())
    exact = {s: total * w / norm for s, w in weights.items()}
    out = {s: math.floor(x) for s, x in exact.items()}
    by_remainder = sorted(exact, key=lambda s: (out[s] - exact[s], s))
    for s in by_remainder[: total - sum(out.values())]:
        out[s] += 1
    return out


@dataclass(frozen=True)
class MixtureRow:
    source: str
    tokens_available: int
    proportion: float
    epochs: float
    tokens_used: float


@dataclass
class MixtureTable:
    """The MPT-style table of a run: per phase and, with several phases, for the whole run."""

    tokens: int
    phases: list[tuple[str, list[MixtureRow]]]
    total: list[MixtureRow]
    warnings: list[str]

    def markdown(self) -> str:
        lines = [f"Token budget: {self.tokens:,} tokens.", ""]
        parts = self.phases if len(self.phases) == 1 else [*self.phases, ("whole run", self.total)]
        for title, rows in parts:
            if len(parts) > 1:
                lines += [f"{title}:", ""]
            lines += [
                "| source | tokens available | proportion | epochs | tokens used |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {r.source} | {r.tokens_available:,} | {r.proportion:.3f} | {r.epochs:.2f} | "
                f"{round(r.tokens_used):,} |"
                for r in rows
            ]
            lines.append("")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines).rstrip() + "\n"

    def to_dict(self) -> dict:
        rows = lambda rs: [r.__dict__ for r in rs]  # noqa: E731
        return {
            "tokens": self.tokens,
            "phases": [[title, rows(rs)] for title, rs in self.phases],
            "total": rows(self.total),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> MixtureTable:
        rows = lambda rs: [MixtureRow(**r) for r in rs]  # noqa: E731
        phases = [(title, rows(rs)) for title, rs in d["phases"]]
        return cls(d["tokens"], phases, rows(d["total"]), list(d["warnings"]))


def mixture_table(
    shards: str | Path | dict[str, int],
    mixture: MixtureConfig,
    *,
    seq_len: int,
    samples_per_step: int,
    steps: int | None = None,
    tokens: int | None = None,
) -> MixtureTable:
    """The MPT-style mixture table for a budget of `steps` (or `tokens`), with warnings.

    Tokens are training positions: `seq_len` per sample (a sample holds `seq_len + 1` tokens,
    the last one only a label), so `tokens_used / tokens_available` is the epochs.

    Args:
        shards: a `tokenize_to_shards` folder, or samples per source.
        mixture: proportions / epochs / schedule; `max_epochs` sets the warning.
        seq_len: the loader's sequence length (full length; a shorter-first schedule keeps the
            tokens of each sample).
        samples_per_step: samples per training step: batch size x world size x micro-batches.
        steps, tokens: the budget, one of them (tokens round down to whole steps).

    Warnings are logged and listed in `warnings` (and in `markdown()`).
    """
    if (steps is None) == (tokens is None):
        raise ValueError("mixture_table: give the budget as steps or as tokens (one of them)")
    if steps is None:
        steps = tokens // (samples_per_step * seq_len)
    available = _available(shards)
    phases = resolve_mixture(available, mixture, samples_per_step=samples_per_step, steps=steps)
    warnings = [
        f"phase {i} starts after step {phase.start_step}: it never trains"
        for i, phase in enumerate(phases)
        if phase.run_samples == 0
    ]
    tables = [
        (_phase_title(i, phase), _phase_rows(phase, available, seq_len))
        for i, phase in enumerate(phases)
    ]
    total = _total_rows(tables, available, seq_len)
    warnings += [
        f"source {r.source!r} repeats {r.epochs:.2f} epochs, more than max_epochs="
        f"{mixture.max_epochs:g} (Muennighoff et al. 2023: repeated tokens lose value past ~4)"
        for r in total
        if r.epochs > mixture.max_epochs
    ]
    for w in warnings:
        log.warning("mixture: %s", w)
    return MixtureTable(steps * samples_per_step * seq_len, tables, total, warnings)


def _phase_title(i: int, phase: ResolvedPhase) -> str:
    end = "end" if phase.end_step is None else phase.end_step
    return f"phase {i}, steps {phase.start_step + 1}-{end}"


def _phase_rows(phase: ResolvedPhase, available: dict[str, int], seq_len: int) -> list[MixtureRow]:
    """One row per source the phase draws from: its share of the phase, tokens and epochs."""
    rows = []
    for source, n in phase.choose.items():
        share = n / phase.epoch_size
        tokens_used = phase.run_samples * share * seq_len
        tokens_available = available[source] * seq_len
        epochs = tokens_used / tokens_available
        rows.append(MixtureRow(source, tokens_available, share, epochs, tokens_used))
    return rows


def _total_rows(
    tables: list[tuple[str, list[MixtureRow]]], available: dict[str, int], seq_len: int
) -> list[MixtureRow]:
    """The whole run per source (phases summed); sources the run never reads are left out."""
    used: dict[str, float] = dict.fromkeys(available, 0.0)
    for _, rows in tables:
        for r in rows:
            used[r.source] += r.tokens_used
    total_used = sum(used.values()) or 1.0
    return [
        MixtureRow(s, available[s] * seq_len, u / total_used, u / (available[s] * seq_len), u)
        for s, u in used.items()
        if u > 0
    ]


def _available(shards: str | Path | dict[str, int]) -> dict[str, int]:
    if isinstance(shards, dict):
        return dict(shards)
    return source_samples(read_shard_stats(shards))
