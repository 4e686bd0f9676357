"""`llm-tokenize`: train a tokenizer from a YAML config, and measure one or several.

    llm-tokenize train CONFIG [--out DIR]
    llm-tokenize stats TOKENIZER --data PATH... [--out DIR]
    llm-tokenize compare TOKENIZER... --data PATH... [--out DIR]

Data and tokenizers may be given as NAME=PATH. Exit status: 0, 1 when a document does not round
trip, 2 for bad input (the message names the file, line or key).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from llm_tokenize.config import TokenizerConfig, TrainingSource
from llm_tokenize.corpus import CorpusError, Document, load_source
from llm_tokenize.report import compare, encode_throughput, round_trip_failures, to_csv, to_markdown
from llm_tokenize.tokenizer import Tokenizer, load_hf_tokenizer

log = logging.getLogger("llm_tokenize")


class ConfigFileError(ValueError):
    """A YAML config that does not fit `TokenizerConfig`; the message names the file and key."""


def load_config(path: str | Path) -> TokenizerConfig:
    """YAML -> `TokenizerConfig` (OmegaConf structured config: types checked, unknown keys
    rejected by name, then the dataclass's own validation)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TokenizerConfig), OmegaConf.load(path))
        return OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError) as err:
        msg = str(err).splitlines()[0]
        raise ConfigFileError(f"{path}: {msg}") from err


def _named(entry: str, default_name) -> tuple[str, str]:
    name, sep, path = entry.partition("=")
    return (name, path) if sep and path else (default_name(Path(entry)), entry)


def _source_name(path: Path) -> str:
    if path.is_dir():
        return path.name
    return path.name.removesuffix(".gz").removesuffix(".jsonl")


def _tokenizer_name(path: Path) -> str:
    return path.parent.name or path.stem if path.name == "tokenizer.json" else path.stem


def read_data(entries: list[str]) -> list[Document]:
    docs: list[Document] = []
    for entry in entries:
        name, path = _named(entry, _source_name)
        docs += load_source(TrainingSource(name=name, paths=[path]))[0]
    if not docs:
        raise CorpusError(f"empty corpus: no documents in {entries}")
    return docs


def load_tokenizers(entries: list[str]) -> dict[str, Tokenizer]:
    """Name -> tokenizer; any byte-level BPE file (GPT-2's too: EOS need not be ours)."""
    loaded = {}
    for entry in entries:
        name, path = _named(entry, _tokenizer_name)
        hf = load_hf_tokenizer(path)
        # Statistics need no EOS; the wrapper wants one: the first special token (GPT-2's is
        # its end-of-text token), else id 0.
        specials = [t.content for _, t in sorted(hf.get_added_tokens_decoder().items())]
        loaded[name] = Tokenizer(hf, specials[0] if specials else hf.id_to_token(0))
    return loaded


def cmd_train(args: argparse.Namespace) -> int:
    from llm_tokenize.artifacts import CARD_FILE, TOKENIZER_FILE, train_from_config

    config = load_config(args.config)
    tok, card = train_from_config(config, args.out)
    print(f"wrote {Path(args.out) / TOKENIZER_FILE} and {CARD_FILE}: {tok.vocab_size} tokens, "
          f"trained on {card['training']['bytes'] / 1e6:.1f} MB in "
          f"{card['training']['seconds']:.1f} s")  # fmt: skip
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    tokenizers = load_tokenizers(args.tokenizers)
    docs = read_data(args.data)
    rows = compare(tokenizers, docs)
    texts = [d.text for d in docs]
    speed = {name: encode_throughput(tok, texts) for name, tok in tokenizers.items()}
    header = ["## Tokenizer statistics", ""]
    header += [f"- {n}: {t.vocab_size} tokens, encode {speed[n]:.1f} MB/s on this machine"
               for n, t in tokenizers.items()]  # fmt: skip
    markdown = "\n".join([*header, "", to_markdown(rows)])
    print(markdown)
    if args.out:
        _write_outputs(Path(args.out), markdown, rows)
    failures = round_trip_failures(rows)
    if failures:
        print(f"llm-tokenize: {failures} document(s) do not round trip", file=sys.stderr)
    return 1 if failures else 0


def _write_outputs(out: Path, markdown: str, rows) -> None:
    from llm_formats.atomic import atomic_write_text
    from llm_tokenize.report import plot

    atomic_write_text(out / "stats.md", markdown + "\n")
    atomic_write_text(out / "stats.csv", to_csv(rows))
    try:
        plot(rows, out / "stats.png")
    except ImportError as err:
        log.warning("no plot: %s", err)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-tokenize", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a YAML TokenizerConfig (with sources)")
    train.add_argument("config")
    train.add_argument("--out", default="tokenizer", help="output folder (default: tokenizer)")
    train.set_defaults(func=cmd_train)
    for name, nargs in (("stats", None), ("compare", "+")):
        cmd = sub.add_parser(name, help=f"{name}: bytes/token, fertility, round trip per group")
        cmd.add_argument("tokenizers", nargs=nargs or 1, metavar="TOKENIZER")
        cmd.add_argument("--data", nargs="+", required=True, help="JSONL files/folders/globs")
        cmd.add_argument("--out", help="write stats.md, stats.csv and stats.png here")
        cmd.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:  # ours name the file, line or key
        print(f"llm-tokenize: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
