"""Shared fixtures: small real inputs cut from the shipped sample corpus, built once per session."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parents[3] / "data" / "sample"
PAGES_PER_LANGUAGE = 6
JUNK_URI = "https://example.org/junk.html"
DUPLICATED_PAGE = "en-US/stable/case-study.html"  # a prose page that passes every filter
# English words, but a '#' every few words: Gopher's symbol-to-word ratio rule must drop it.
JUNK_HTML = (
    "<html><head><title>Deals</title></head><body><p>"
    + " ".join(f"#best #deal of the day and the {w} with free shipping" for w in range(60))
    + "</p></body></html>"
)


def _http_payload(html: str) -> bytes:
    body = html.encode("utf-8")
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}"
    )
    return head.encode() + b"\r\n\r\n" + body


def _append_page(writer, uri: str, payload: bytes) -> None:
    from warcio.statusandheaders import StatusAndHeaders  # noqa: F401  (warcio parses the head)

    record = writer.create_warc_record(
        uri,
        "response",
        payload=io.BytesIO(payload),
        warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
    )
    writer.write_record(record)


def write_small_warc(path: Path, languages=("en", "de", "fr"), pages=PAGES_PER_LANGUAGE) -> dict:
    """First `pages` pages per language + a copy of one English page + a junk page."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    uris: dict[str, list[str]] = {}
    duplicate = None
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for lang in languages:
            name = next(SAMPLE.glob(f"web/handbook-{lang}-*.warc.gz"))
            with open(name, "rb") as f:
                for record in ArchiveIterator(f):
                    if record.rec_type != "response":
                        continue
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    payload = record.raw_stream.read()
                    head = record.http_headers.to_bytes()
                    _append_page(writer, uri, head + payload)
                    if uri.endswith(DUPLICATED_PAGE):
                        duplicate = (uri, head + payload)
                    uris.setdefault(lang, []).append(uri)
                    if len(uris[lang]) == pages:
                        break
        _append_page(writer, duplicate[0] + "?copy", duplicate[1])  # planted exact duplicate
        _append_page(writer, JUNK_URI, _http_payload(JUNK_HTML))
    return uris


def write_small_books(path: Path, n_docs: int = 3) -> list[str]:
    """`n_docs` Shakespeare texts cut to 20 kB, plus a re-spaced, upper-cased copy of the first."""
    with gzip.open(SAMPLE / "books" / "shakespeare.jsonl.gz", "rt") as f:
        records = [json.loads(line) for _, line in zip(range(n_docs), f, strict=False)]
    records = [{"id": r["id"], "text": r["text"][:20_000]} for r in records]
    dup = {"id": "dup", "text": "  " + records[0]["text"].upper().replace(" ", "   ")}
    with open(path, "w") as f:
        for r in [*records, dup]:
            f.write(json.dumps(r) + "\n")
    return [r["id"] for r in records]


@pytest.fixture(scope="session")
def small_inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    (root / "web").mkdir()
    (root / "books").mkdir()
    uris = write_small_warc(root / "web" / "small.warc.gz")
    book_ids = write_small_books(root / "books" / "books.jsonl")
    return {"root": root, "uris": uris, "book_ids": book_ids}


def small_curation_config(root: Path, out: Path, **fields):
    """The curation config of the small inputs in `root` (web WARC slice + books), to `out`."""
    from llm_data import CurationConfig, SourceConfig

    return CurationConfig(
        sources=[
            SourceConfig(name="web", path=str(root / "web" / "*.warc.gz"), format="warc"),
            SourceConfig(
                name="books", path=str(root / "books"), format="jsonl", quality_filters=False
            ),
        ],
        output_dir=str(out),
        **fields,
    )


@pytest.fixture(scope="session")
def curated(small_inputs, tmp_path_factory) -> dict:
    """One curation run over the small inputs, shared by the curation tests."""
    from llm_data import run_curation

    out = tmp_path_factory.mktemp("curated") / "out"
    config = small_curation_config(small_inputs["root"], out)
    return {"out": out, "stats": run_curation(config), "config": config}


def read_curated(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            docs += [json.loads(line) for line in f]
    return docs


@pytest.fixture(scope="session")
def helpers():
    """Constants and helpers for test modules (importlib import mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        SAMPLE=SAMPLE,
        JUNK_URI=JUNK_URI,
        PAGES_PER_LANGUAGE=PAGES_PER_LANGUAGE,
        read_curated=read_curated,
        small_curation_config=small_curation_config,
        write_small_books=write_small_books,
    )


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json trained on 8 kB of Shakespeare (vocab 300)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with gzip.open(SAMPLE / "books" / "shakespeare.jsonl.gz", "rt") as f:
        text = json.loads(f.readline())["text"][:8000]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([text], trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_json):
    """`tokenizer_json` behind the stack's tokenizer protocol (what llm_tokenize.Tokenizer is):
    special-token strings in the text encode as text, EOS only where a caller puts its id."""
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tokenizer_json))
    hf.encode_special_tokens = True

    class Wrapped:
        eos_id = hf.token_to_id("<|endoftext|>")
        vocab_size = hf.get_vocab_size(with_added_tokens=True)

        def encode_batch(self, texts):
            return [e.ids for e in hf.encode_batch(list(texts), add_special_tokens=False)]

    return Wrapped()


@pytest.fixture(scope="session")
def curated_small(tmp_path_factory) -> Path:
    """A curation-shaped folder: books/ (4 texts) and code/ (6 modules), 3-8 kB each."""
    root = tmp_path_factory.mktemp("curated_small")
    for source, name, n, size in (
        ("books", "shakespeare", 4, 8000),
        ("code", "python-stdlib", 6, 3000),
    ):
        folder = root / source
        folder.mkdir()
        with gzip.open(next(SAMPLE.glob(f"*/{name}.jsonl.gz")), "rt") as f:
            records = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
        with gzip.open(folder / "00000.jsonl.gz", "wt") as f:
            for r in records:
                f.write(
                    json.dumps({"id": r["id"], "text": r["text"][:size], "metadata": {}}) + "\n"
                )
    (root / "logs").mkdir()  # datatrove's logs folder must be skipped
    return root


@pytest.fixture(scope="session")
def shards(curated_small, tokenizer, tmp_path_factory) -> dict:
    from llm_data import tokenize_to_shards

    out = tmp_path_factory.mktemp("shards") / "out"
    stats = tokenize_to_shards(
        curated_small, tokenizer, out, seq_len=32, heldout_fraction=0.2, seed=3
    )
    return {"out": out, "stats": stats}
