"""`llm-data`: curate, shard and inspect from the command line (no torch unless `shards`).

llm-data curate CONFIG.yaml [--overwrite] [--workers N] [--tasks N]
llm-data shards CURATED_DIR --tokenizer tokenizer.json --out SHARDS_DIR --seq-len N
    [--tasks N] [--workers N] [--staging-dir DIR]    (SHARDS_DIR may be s3://bucket/prefix)
llm-data inspect CURATED_DIR [--examples N]
llm-data train-classifier --positive NAME=PATH [...] --negative NAME=PATH [...] --out MODEL.bin
    [--heldout-fraction F] [--seed N] [--chunk-words N] [--lr F] [--epoch N] ...   [classifier]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]

SHARDS_EXTRA_HINT = "pip install 'llm-data[shards]'"


def _curate(args: argparse.Namespace) -> int:
    from llm_data import readers
    from llm_data.curation import run_curation
    from llm_data.yaml_config import load_curation_config

    config = load_curation_config(args.config)
    given = {"overwrite": args.overwrite, "workers": args.workers, "tasks": args.tasks}
    overrides = {key: value for key, value in given.items() if value}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    readers.SHOW_PROGRESS = not args.no_progress
    if readers.is_url(config.output_dir):
        stats = _curate_to_store(config, run_curation)
    else:
        stats = run_curation(config)
    for source, result in stats.items():
        print(f"{source}: {result['documents_out']} documents out, {result['seconds']} s")
        for row in result["stages"]:
            why = ", ".join(f"{k} {v}" for k, v in row.get("removed_by", {}).items())
            print(f"  {row['stage']:<28} in {row['in']:>7}  kept {row['kept']:>7}  {why}")
    print(f"curated into {config.output_dir}")
    return 0


def _curate_to_store(config, run_curation) -> dict:
    """Curate into a local temp folder, then upload it to the object store `output_dir`.

    run_curation writes atomically by renaming a folder, which object stores cannot do; so the
    upload puts `curation_stats.json` last: a folder without it is an unfinished upload.
    """
    import tempfile

    from fsspec.core import url_to_fs

    from llm_data.curation import STATS_FILE

    fs, remote = url_to_fs(config.output_dir)
    if fs.exists(remote) and not config.overwrite:
        raise FileExistsError(f"output_dir={config.output_dir!r} exists; use --overwrite")
    with tempfile.TemporaryDirectory(prefix="llm-data-") as tmp:
        local = Path(tmp) / "curated"
        stats = run_curation(dataclasses.replace(config, output_dir=str(local)))
        if fs.exists(remote):
            fs.rm(remote, recursive=True)
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != STATS_FILE)
        for path in [*files, local / STATS_FILE]:
            fs.put_file(str(path), f"{remote}/{path.relative_to(local).as_posix()}")
    return stats


def _require_shards_extra() -> None:
    """Exit with the install line when a module of the [shards] extra is missing (shards.py
    imports torch and streaming only when it runs, so importing it proves nothing)."""
    import importlib.util

    missing = [
        m for m in ("streaming", "torch", "tokenizers") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise SystemExit(
            f"llm-data shards needs the [shards] extra ({', '.join(missing)} not installed): "
            f"{SHARDS_EXTRA_HINT}"
        )


def _shards(args: argparse.Namespace) -> int:
    _require_shards_extra()
    from llm_data.tokenizer import load_tokenizer
    from llm_data.training_data.shards import tokenize_to_shards

    stats = tokenize_to_shards(
        args.curated,
        load_tokenizer(args.tokenizer, args.eos_token),
        args.out,
        seq_len=args.seq_len,
        heldout_fraction=args.heldout_fraction,
        seed=args.seed,
        overwrite=args.overwrite,
        tasks=args.tasks,
        workers=args.workers,
        staging_dir=args.staging_dir,
    )
    for name, s in stats["sources"].items():
        print(f"{name}: {s}")
    print(f"shards in {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from llm_data.inspect import inspect_curated, render_report

    report = inspect_curated(args.path, examples=args.examples, tokenizer=args.tokenizer)
    print(json.dumps(report, indent=1, ensure_ascii=False) if args.json else render_report(report))
    return 0


def _labelled(spec: str):
    from llm_data.classifier import LabelledSource

    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME=PATH (a JSONL file/folder/glob)")
    return LabelledSource(name=name, path=path)


_TRAIN_HYPERPARAMETERS = {"lr": float, "epoch": int, "dim": int, "word_ngrams": int,
                          "min_count": int, "bucket": int, "threads": int}  # fmt: skip


def _train_classifier(args: argparse.Namespace) -> int:
    from llm_data.classifier import ClassifierTrainConfig, train_classifier
    from llm_data.yaml_config import ConfigError

    given = {k: getattr(args, k) for k in _TRAIN_HYPERPARAMETERS if getattr(args, k) is not None}
    try:
        config = ClassifierTrainConfig(
            positives=args.positive,
            negatives=args.negative,
            output=str(args.out),
            heldout_fraction=args.heldout_fraction,
            seed=args.seed,
            chunk_words=args.chunk_words,
            **given,
        )
    except ValueError as err:  # a setting out of range, named by the config's validation
        raise ConfigError(str(err)) from err
    card = train_classifier(config)
    summary = {"model": card["model"], "counts": card["counts"], "metrics": card["metrics"]}
    print(json.dumps(summary, indent=1))
    return 0


def _add_train_classifier(sub) -> None:
    train = sub.add_parser(
        "train-classifier", help="fit a fastText quality classifier on labelled JSONL [classifier]"
    )
    for flag, what in (("--positive", "good"), ("--negative", "bad")):
        train.add_argument(
            flag, type=_labelled, action="append", required=True, metavar="NAME=PATH",
            help=f"{what} documents: a JSONL file, folder or glob (repeatable)",
        )  # fmt: skip
    train.add_argument("--out", type=Path, required=True, help="model .bin (card beside it)")
    train.add_argument("--heldout-fraction", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--chunk-words", type=int, default=0, help="examples of N words (0: docs)")
    for name, kind in _TRAIN_HYPERPARAMETERS.items():
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, help="fastText's")
    train.set_defaults(run=_train_classifier)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-data", description="Curate pretraining data.")
    sub = parser.add_subparsers(dest="command", required=True)

    curate = sub.add_parser("curate", help="run a curation config (YAML of CurationConfig)")
    curate.add_argument("config", type=Path, help="YAML file: CurationConfig fields")
    curate.add_argument("--overwrite", action="store_true", help="replace output_dir")
    curate.add_argument("--workers", type=int, help="override the config's workers")
    curate.add_argument("--tasks", type=int, help="override the config's tasks")
    curate.add_argument("--no-progress", action="store_true", help="no progress bars")
    curate.set_defaults(run=_curate)

    shards = sub.add_parser("shards", help="tokenize a curated folder into MDS shards [shards]")
    shards.add_argument("curated", type=Path, help="output_dir of `llm-data curate`")
    shards.add_argument("--tokenizer", type=Path, required=True, help="a tokenizer.json")
    shards.add_argument(
        "--out", required=True, help="shards folder to write, or a URL (s3://bucket/run/shards)"
    )
    shards.add_argument(
        "--staging-dir", type=Path, help="with a URL --out: the local folder built before upload"
    )
    shards.add_argument("--seq-len", type=int, required=True)
    shards.add_argument("--heldout-fraction", type=float, default=0.01)
    shards.add_argument("--seed", type=int, default=0)
    shards.add_argument("--eos-token", help="default: the EOS of the tokenizer's card")
    shards.add_argument("--overwrite", action="store_true")
    shards.add_argument("--tasks", type=int, default=1, help="datatrove tasks (shares of files)")
    shards.add_argument("--workers", type=int, default=1, help="tasks at once (local processes)")
    shards.set_defaults(run=_shards)

    inspect = sub.add_parser("inspect", help="summarize a curated folder")
    inspect.add_argument("path", type=Path, help="output_dir of `llm-data curate`")
    inspect.add_argument("--examples", type=int, default=3, help="removed documents to show")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--tokenizer", type=Path, help="a tokenizer.json: count tokens too")
    inspect.set_defaults(run=_inspect)
    _add_train_classifier(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from llm_data.classifier_card import ClassifierError
    from llm_data.readers import InputError
    from llm_data.yaml_config import ConfigError
    from llm_formats.jsonl import FormatError
    from llm_formats.tokenizer import TokenizerFormatError

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    errors = (ConfigError, InputError, TokenizerFormatError, FileExistsError, FileNotFoundError,
              ClassifierError, FormatError)  # fmt: skip
    try:
        return args.run(args)
    except errors as err:
        print(f"llm-data {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
