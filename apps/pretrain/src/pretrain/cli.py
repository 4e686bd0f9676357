"""`pretrain`: run the whole pipeline, or one stage of it, from a YAML config plus overrides.

pretrain                              # every stage with the default config
pretrain train train.steps=50         # one stage, with an override
pretrain train --config my.yaml train.steps=50   # options go before or after the stage
pretrain show-config                  # print the resolved config and exit
"""

from __future__ import annotations

import argparse
import logging
import sys

from pretrain.config import load_pretrain_config
from pretrain.loading import ConfigError
from pretrain.pipeline import STAGES, run_pipeline
from pretrain.rundir import RunError

log = logging.getLogger("pretrain")
_CHATTY_LOGGERS = ("trafilatura", "htmldate", "courlan", "jieba")


_EPILOG = """\
Overrides are key.sub=value pairs, e.g. train.steps=100 model.n_layers=2.

The run directory is runs/<run.name>. A stage whose config sections and outputs are unchanged is
skipped; a stage run alone always runs. One pretrain at a time per run directory: a second one
fails at once, naming the holder (pid, host, start) of <run>/pretrain.lock.

Training resumes from the newest valid checkpoint. Raising train.steps continues a finished run
(the LR schedule is recomputed for the new length, logged); settings that do not change the
updates (log_every, checkpoint_every, keep_checkpoints, eval_every, ...) keep the checkpoints.
Changing what the checkpoints were trained with (data, tokenizer, shards, loader, model, lr,
seed, ...) is an error naming each change, as is a run whose checkpoints are all corrupt: use
another run.name, or --restart to delete the run's checkpoints and metrics and train from step 0.

model_preset gives the preset's model; model.* keys apply on top. model.vocab_size and
model.max_seq_len follow tokenizer.vocab_size and shards.seq_len. Stages other than curate need
an existing run; eval scores the newest checkpoint (an error if it is corrupt) and records its
step in eval.json.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pretrain",
        description="Curate -> tokenizer -> shards -> train -> eval -> report, on one config.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    choices = ["all", *STAGES, "show-config"]
    parser.add_argument("stage", nargs="?", default="all", help=f"one of {', '.join(choices)}")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    parser.add_argument("--config", help="YAML config (default: the packaged default.yaml)")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="delete this run's checkpoints, metrics and eval results (logged) and train again "
        "from step 0; needs the train stage",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_intermixed_args(argv)  # options before or after the stage
    if "=" in args.stage:  # `pretrain train.steps=5` means all stages with an override
        args.overrides.insert(0, args.stage)
        args.stage = "all"
    if args.stage not in choices:
        parser.error(f"unknown stage {args.stage!r}; choose from {', '.join(choices)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # per-page extractor chatter; datatrove counts what was dropped
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        config = load_pretrain_config(args.config, args.overrides)
        if args.stage == "show-config":
            from pretrain.loading import to_yaml

            print(to_yaml(config), end="")
            return 0
        stages = list(STAGES) if args.stage == "all" else [args.stage]
        run_dir = run_pipeline(config, stages, restart=args.restart)
    except ConfigError as e:
        print(f"pretrain: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RunError) as e:
        print(f"pretrain: error: {e}", file=sys.stderr)
        return 1
    log.info("done: %s", run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
