"""Convert checkpoints: `dcp-to-hf RUN_DIR|CHECKPOINT_DIR OUT_DIR`, `hf-to-dcp HF_DIR OUT_DIR`."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from llm_model.hf import ARCHITECTURES
from tools.convert.checkpoints import DTYPES, dcp_to_hf, hf_to_dcp


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.convert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    to_hf = sub.add_parser("dcp-to-hf", help="DCP checkpoint -> Hugging Face directory")
    to_hf.add_argument("source", help="run directory, its checkpoints/ or one step_NNNNNN/")
    to_hf.add_argument("out", help="output directory (replaced if it exists)")
    to_hf.add_argument("--step", type=int, help="checkpoint step (default: newest valid)")
    to_hf.add_argument("--shard-size", default="5GB", help="largest safetensors file (5GB)")
    to_hf.add_argument("--dtype", choices=sorted(DTYPES), help="cast weights (default: keep)")
    to_hf.add_argument("--tokenizer", help="tokenizer.json (default: the run's)")
    to_hf.add_argument("--eos-token", help="EOS token (default: the run's tokenizer.eos_token)")
    to_hf.add_argument(
        "--arch", default="auto", choices=["auto", *ARCHITECTURES],
        help="transformers architecture (auto: the first of llama, olmo2, gpt2 that fits)",
    )  # fmt: skip
    to_hf.add_argument(
        "--strict", action="store_true", help="refuse instead of warning on a lossy export"
    )
    from_hf = sub.add_parser(
        "hf-to-dcp", help="Hugging Face Llama/OLMo 2 directory -> DCP checkpoint"
    )
    from_hf.add_argument("source", help="directory with config.json and safetensors file(s)")
    from_hf.add_argument("out", help="checkpoint directory to write (replaced if it exists)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            if args.command == "dcp-to-hf":
                out = dcp_to_hf(
                    args.source, args.out, step=args.step, shard_size=args.shard_size,
                    dtype=args.dtype, tokenizer=args.tokenizer, eos_token=args.eos_token,
                    strict=args.strict, arch=args.arch,
                )  # fmt: skip
            else:
                out = hf_to_dcp(args.source, args.out)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
