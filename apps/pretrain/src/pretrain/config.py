"""The pretrain config: each package's own config, composed, plus the few knobs only the app has.

The dataclass defaults here are the one set of defaults, and they are the sample run (the shipped
corpus, a tiny model, CPU-sized): `pretrain` with no `--config` runs them. `configs/default.yaml`
beside this file spells them out with comments (`tests/test_config.py` keeps it equal to them);
a user's `--config` file is laid over them, so it names only what it changes. The model section
starts from the preset named by `model_preset` and the YAML / command line override its fields
(see `load_pretrain_config`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from llm_data.config import (
    C4Config,
    CurationConfig,
    DecontaminationConfig,
    FineWebConfig,
    GopherConfig,
    GopherRepetitionConfig,
    SourceConfig,
)
from llm_data.training_data.mixture import MixtureConfig
from llm_model import ModelConfig
from llm_model.presets import PRESETS, get_preset
from llm_tokenize import TokenizerConfig
from llm_train import TrainConfig
from pretrain.loading import ConfigError, merge_into, parse_override, read_yaml

log = logging.getLogger(__name__)

SAMPLE = "data/sample"
SAMPLE_TASKS = ("arc_easy", "piqa", "sciq", "hellaswag", "lambada")
SAMPLE_LANGUAGES = ("en", "de", "fr", "es", "ja", "zh")  # the handbook pages' languages we keep


def _sample_sources() -> list[SourceConfig]:
    return [
        SourceConfig(name="web", path=f"{SAMPLE}/web", format="warc", quality_filters=True),
        SourceConfig(name="books", path=f"{SAMPLE}/books", format="jsonl", quality_filters=False),
        SourceConfig(name="code", path=f"{SAMPLE}/code", format="jsonl", quality_filters=False),
    ]


def _sample_curation() -> CurationConfig:
    """The sample corpus with every quality rule on, decontaminated against the eval slices."""
    return CurationConfig(
        sources=_sample_sources(),
        languages=SAMPLE_LANGUAGES,
        gopher=GopherConfig(),
        gopher_repetition=GopherRepetitionConfig(enabled=True),  # web: 3 of 511 pages go
        c4=C4Config(enabled=True),
        fineweb=FineWebConfig(enabled=True),
        decontamination=DecontaminationConfig(eval_paths=(f"{SAMPLE}/eval",)),
    )


def _sample_training() -> TrainConfig:
    """A few minutes on 2 CPU cores: a high LR suits the tiny debug model."""
    return TrainConfig(steps=300, lr=6e-3, warmup_steps=30, checkpoint_every=100)


# A run's name names its folder and lands in the sbatch script (job name, log path): no
# separators, quotes, spaces or newlines; no leading '.' (hidden) or '-' (an option).
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


@dataclass(kw_only=True)
class RunConfig:
    """Where the run lives and what it runs on.

    Attributes:
        name: run directory name under ``root``.
        root: parent folder of run directories.
        device: "auto" picks CUDA when available.
        threads: torch CPU threads (0 = torch's default).
        tensorboard: mirror the training metrics to ``<run>/tensorboard/`` when the
            ``tensorboard`` package is installed (``metrics.jsonl`` stays the source of truth).
        replicas: under torchrun, hybrid sharding (HSDP): the mesh is replicas x (WORLD_SIZE /
            replicas); parameters are sharded within a group (e.g. a node) and replicated
            across groups. 1 shards over every process (FSDP).
    """

    name: str = "sample"
    root: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    tensorboard: bool = True
    replicas: int = 1

    def __post_init__(self) -> None:
        if not RUN_NAME.fullmatch(self.name):  # it names a folder and lands in an sbatch script
            raise ValueError(
                f"run.name={self.name!r} must be a plain folder name: letters, digits, '.', '_' "
                "and '-', not starting with '.' or '-'"
            )
        if self.threads < 0:
            raise ValueError(f"run.threads={self.threads} must be >= 0")
        if self.replicas < 1:
            raise ValueError(f"run.replicas={self.replicas} must be >= 1")


@dataclass(kw_only=True)
class ShardsConfig:
    """Tokenized MDS shards: sample length and the held-out split (llm_data.training_data)."""

    seq_len: int = 256
    heldout_fraction: float = 0.02
    seed: int = 0
    tasks: int = 1  # datatrove tasks (shares of the curated files); the result does not change
    workers: int = 1  # tasks at once on `data.executor` local or ray (slurm: as scheduled)

    def __post_init__(self) -> None:
        if self.seq_len < 8:
            raise ValueError(f"shards.seq_len={self.seq_len} must be >= 8")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"shards.heldout_fraction={self.heldout_fraction} must be in [0, 1)")
        for name in ("tasks", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"shards.{name}={getattr(self, name)} must be >= 1")


# How the shards run, not what they hold (the pipeline does not hash them).
SHARDS_RUNTIME_FIELDS = frozenset({"tasks", "workers"})


@dataclass(kw_only=True)
class LoaderConfig(MixtureConfig):
    """Batches from the shards, and the data mixture: llm-data's ``MixtureConfig`` fields
    (``proportions`` or ``epochs`` per source, a ``schedule`` of phases by step, a shorter-first
    ``seq_len_schedule``, ``max_epochs`` for the warning) plus the batch size and seed."""

    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"loader.batch_size={self.batch_size} must be >= 1")
        try:
            super().__post_init__()
        except ValueError as e:
            raise ValueError(f"loader.{e}") from None


@dataclass(kw_only=True)
class EvalConfig:
    """End-of-run (and optional in-loop) evaluation.

    Attributes:
        tasks: JSONL task files in the shared eval schema (zero-shot cloze), or YAML task
            files of llm-eval (`llm_eval.task_spec`: generate-until, MC letters, few-shot).
        limit: items per task (0 = all).
        heldout_docs: held-out documents for bits per byte (0 = all).
        batch_size: sequences per forward pass.
        every: in-loop evaluation every this many steps (0 = only at the end).
        bpb_sets: named JSONL(.gz) files whose texts get their own bits per byte, e.g. sets
            kept out of training ({"text"} records, or task items: context + gold choice).
        autocast: bf16 autocast for scoring on CUDA (fp32 on CPU).
        precision: dtype the weights are loaded in for the eval stage: "auto" is bf16 on CUDA
            and fp32 on a CPU (so CPU scores do not change), or "fp32" / "bf16" anywhere.
        shard: under torchrun, shard the weights over the ranks with FSDP2 ("always"), keep a
            whole copy on each rank ("never"), or shard only when the weights in the eval
            precision would take more than half of a device's memory ("auto"; never on a CPU).
    """

    tasks: list[str] = field(
        default_factory=lambda: [
            *(f"{SAMPLE}/eval/{t}.jsonl.gz" for t in SAMPLE_TASKS),
            f"{SAMPLE}/tasks/generative.yaml",
        ]
    )
    limit: int = 100
    heldout_docs: int = 0
    batch_size: int = 32
    every: int = 0
    bpb_sets: dict[str, str] = field(
        default_factory=lambda: {
            "fiction": f"{SAMPLE}/eval/lambada.jsonl.gz",
            "science": f"{SAMPLE}/eval/sciq.jsonl.gz",
        }
    )
    autocast: bool = True
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    shard: Literal["auto", "always", "never"] = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (("precision", ("auto", "fp32", "bf16")),
                              ("shard", ("auto", "always", "never"))):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"eval.{name}={getattr(self, name)!r} must be one of {', '.join(allowed)}"
                )
        for name, path in self.bpb_sets.items():
            if not name or not isinstance(path, str) or not path:
                raise ValueError(f"eval.bpb_sets: {name!r}: {path!r} must name a JSONL file")
        for name in ("limit", "heldout_docs", "every"):
            if getattr(self, name) < 0:
                raise ValueError(f"eval.{name}={getattr(self, name)} must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size={self.batch_size} must be >= 1")


@dataclass(kw_only=True)
class PlanConfig:
    """`pretrain plan`: the train stage's first step simulated on a fake world (pretrain/plan.py).

    Attributes:
        world_size: ranks of the simulated job; the mesh is run.replicas x (world_size /
            run.replicas), as under torchrun.
        out: also write the tables as markdown to this file ("": print only).
    """

    world_size: int = 8
    out: str = ""

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"plan.world_size={self.world_size} must be >= 1")


@dataclass(kw_only=True)
class PretrainConfig:
    """The whole pipeline: curate -> tokenizer -> shards -> train -> eval."""

    run: RunConfig = field(default_factory=RunConfig)
    data: CurationConfig = field(default_factory=_sample_curation)
    tokenizer: TokenizerConfig = field(
        default_factory=lambda: TokenizerConfig(vocab_size=4096, show_progress=False)
    )
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    loader: LoaderConfig = field(
        default_factory=lambda: LoaderConfig(proportions={"web": 0.5, "books": 0.25, "code": 0.25})
    )
    model_preset: str = "debug"
    model: ModelConfig = field(default_factory=lambda: get_preset("debug"))
    train: TrainConfig = field(default_factory=_sample_training)
    eval: EvalConfig = field(default_factory=EvalConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)

    def __post_init__(self) -> None:
        if self.model_preset not in PRESETS:
            raise ValueError(f"model_preset={self.model_preset!r} is not one of {sorted(PRESETS)}")
        self._check_mixture_sources()
        # The loader places phase boundaries at step x grad_accum_steps batches; a batch warmup
        # takes fewer batches per step during its ramp, so the boundaries would land late.
        phased = [k for k in ("schedule", "seq_len_schedule") if getattr(self.loader, k)]
        if self.train.batch_warmup_tokens and phased:
            raise ValueError(
                f"train.batch_warmup_tokens={self.train.batch_warmup_tokens} cannot be combined "
                f"with loader.{' or loader.'.join(phased)} (phase boundaries are placed in "
                "full-size steps); turn one of them off"
            )

    def _check_mixture_sources(self) -> None:
        """A mixture naming no data source fails here, not at train after three stages ran
        (the shards hold one stream per data source)."""
        known = [s.name for s in self.data.sources]
        mixes = [("loader", self.loader.proportions, self.loader.epochs)] + [
            (f"loader.schedule[{i}]", p.proportions, p.epochs)
            for i, p in enumerate(self.loader.schedule)
        ]
        for where, proportions, epochs in mixes:
            for key, table in (("proportions", proportions), ("epochs", epochs)):
                unknown = sorted(set(table) - set(known))
                if unknown:
                    raise ValueError(
                        f"{where}.{key}: {', '.join(map(repr, unknown))} names no data source "
                        f"(data.sources: {', '.join(known)})"
                    )


def default_yaml() -> Path:
    """The defaults spelled out with comments: a starting point for a config file, never read
    by `load_pretrain_config` (the dataclasses are the defaults; a test keeps the two equal)."""
    return Path(str(resources.files("pretrain") / "configs" / "default.yaml"))


def load_pretrain_config(
    path: str | None, overrides: list[str], *, allow_env: bool = False, sized: bool = True
) -> PretrainConfig:
    """The dataclass defaults <- the YAML file `path` <- `key=value` overrides, checked.

    The file and the overrides change only the keys they name (a list or a mapping they name is
    replaced whole), so `path=None` is the sample run and a file need name only what it changes.
    The model section is the preset's, with the `model` keys given on top. A preset named on the
    command line that differs from the file's replaces the file's `model` keys too (they were
    written for the other preset; a warning names them). `model.vocab_size` and
    `model.max_seq_len` are set from `tokenizer.vocab_size` and `shards.seq_len`, so the
    resolved config is the model that trains. The file is read strictly (``read_yaml``): a
    duplicate key is an error, and so is a ``${...}`` interpolation unless ``allow_env``.
    ``sized=False`` keeps the model's own vocabulary and context (`pretrain plan`: no tokenizer).
    """
    file = read_yaml(path, allow_interpolation=allow_env) if path else None
    file_layers = [(f"config file {path}", file)] if path else []
    cli_layers = []
    for text in overrides:
        key, value = parse_override(text)
        cli_layers.append((f"override {text!r}", _nest(key, value)))
    preset = _preset_name([*file_layers, *cli_layers])
    file_layers = [_drop_model_keys_of_another_preset(layer, preset) for layer in file_layers]
    layers = [*file_layers, *cli_layers]
    schema = PretrainConfig(model_preset=preset, model=get_preset(preset))
    config = merge_into(schema, layers)
    return _sized_model(config, layers) if sized else config


def _preset_name(layers: list[tuple[str, dict[str, Any]]]) -> str:
    name = "debug"
    for _, mapping in layers:
        name = mapping.get("model_preset", name)
    if name not in PRESETS:
        raise ConfigError(f"model_preset={name!r} is not one of {sorted(PRESETS)}")
    return name


def _drop_model_keys_of_another_preset(
    layer: tuple[str, dict[str, Any]], preset: str
) -> tuple[str, dict[str, Any]]:
    source, mapping = layer
    model = mapping.get("model")
    if mapping.get("model_preset", "debug") == preset or not isinstance(model, dict) or not model:
        return layer
    log.warning(
        "model_preset=%s from the command line: ignoring %s of %s (written for preset %s); "
        "give them on the command line to apply them to %s",
        preset,
        ", ".join(f"model.{key}" for key in model),
        source,
        mapping.get("model_preset", "debug"),
        preset,
    )
    return source, {k: v for k, v in mapping.items() if k != "model"}


def _sized_model(config: PretrainConfig, layers: list[tuple[str, dict[str, Any]]]) -> Any:
    """The model's vocabulary and context are the tokenizer's and the shards'; say so if asked
    for others rather than record one model and train another."""
    sizes = {"vocab_size": config.tokenizer.vocab_size, "max_seq_len": config.shards.seq_len}
    owners = {"vocab_size": "tokenizer.vocab_size", "max_seq_len": "shards.seq_len"}
    for source, mapping in layers:
        for key, value in (mapping.get("model") or {}).items():
            if key in sizes and value != sizes[key]:
                raise ConfigError(
                    f"{source}: model.{key}={value} disagrees with {owners[key]}={sizes[key]}; "
                    f"the model follows {owners[key]}: set that instead"
                )
    try:
        config.model = dataclasses.replace(config.model, **sizes)
    except ValueError as e:
        raise ConfigError(f"invalid config: {e}") from None
    return config


def _nest(key: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}; list items (`a[0].b`) are not addressable here."""
    if "[" in key:
        raise ConfigError(f"override {key!r}: set list entries in the YAML file instead")
    out: dict[str, Any] = value
    for part in reversed(key.split(".")):
        if not part:
            raise ConfigError(f"override key {key!r} has an empty part")
        out = {part: out}
    return out
