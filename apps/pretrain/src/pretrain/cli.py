"""`pretrain`: run the whole pipeline, or one stage of it, from a YAML config plus overrides.

pretrain                              # every stage with the default config
pretrain train train.steps=50         # one stage, with an override
pretrain --config my.yaml model.d_model=256
pretrain show-config                  # print the resolved config and exit
"""

from __future__ import annotations

import argparse
import logging
import sys

from pretrain.config import load_pretrain_config
from pretrain.loading import ConfigError
from pretrain.pipeline import STAGES, run_pipeline

log = logging.getLogger("pretrain")
_CHATTY_LOGGERS = ("trafilatura", "htmldate", "courlan", "jieba")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pretrain",
        description="Curate -> tokenizer -> shards -> train -> eval -> report, on one config.",
        epilog="Overrides are key.sub=value pairs, e.g. train.steps=100 model.n_layers=2.",
    )
    choices = ["all", *STAGES, "show-config"]
    parser.add_argument("stage", nargs="?", default="all", help=f"one of {', '.join(choices)}")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    parser.add_argument("--config", help="YAML config (default: the packaged default.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
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
        run_dir = run_pipeline(config, stages)
    except ConfigError as e:
        print(f"pretrain: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"pretrain: error: {e}", file=sys.stderr)
        return 1
    log.info("done: %s", run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
