"""Input readers: datatrove's WARC, JSONL and Parquet readers that fail loudly on bad input.

datatrove's readers log and skip bad records; for a curated training set a truncated file or a
record without text is a bug to fix, so these raise `InputError` naming the file (and line).
Lines that can be skipped (invalid JSON, empty text) are counted with their reason and line.
Paths may be local or fsspec URLs (`s3://...`, `memory://...`), read through datatrove's DataFolder.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import zlib
from pathlib import Path

from datatrove.io import get_datafolder
from datatrove.pipeline.readers import JsonlReader, ParquetReader, WarcReader
from datatrove.pipeline.readers.base import BaseDiskReader

from llm_data.config import SourceConfig

__all__ = [
    "InputError",
    "StrictJsonlReader",
    "StrictParquetReader",
    "StrictWarcReader",
    "is_url",
    "make_reader",
    "read_skipped",
    "resolve_source_files",
]

log = logging.getLogger(__name__)
_MAX_WARNINGS = 10  # per task; every skipped line is still counted and recorded
# The CLI turns on datatrove's progress bars (tqdm: files, documents) in `make_reader`'s readers.
SHOW_PROGRESS = False

# The file names a source folder's listing reads, matched case-insensitively (`.JSONL` too).
# JSONL compression is inferred from the name (fsspec: gz, bz2, zst, xz); `.ndjson` is the
# other common name of JSON Lines. Any other file in the folder is named in a warning.
_SUFFIXES = {
    "warc": (".warc", ".warc.gz", ".warc.zst"),
    "jsonl": tuple(
        f"{stem}{ext}" for stem in (".jsonl", ".ndjson") for ext in ("", ".gz", ".zst", ".bz2")
    ),
    "parquet": (".parquet",),
}
_LISTED = 5  # unread files named in the warning


class InputError(ValueError):
    """Bad input data: a missing path, a corrupt file or a malformed record."""


def is_url(path: str) -> bool:
    """True for an fsspec URL such as `s3://bucket/key` or `memory://x` (not a local path)."""
    return "://" in path and not path.startswith("file://")


def resolve_source_files(source: SourceConfig) -> tuple[Path | str, list[str]]:
    """Return (base folder, sorted file paths relative to it) for a file, folder or glob.

    The base folder is a `Path` for a local source and the URL string for an fsspec one.

    Raises:
        InputError: the path matches no file of the source's format.
    """
    if is_url(source.path):
        return _resolve_url_files(source)
    path = Path(source.path.removeprefix("file://")).expanduser()
    if glob.has_magic(source.path):
        files = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
        base = Path(source.path.split("*")[0].split("?")[0].split("[")[0])
        base = base if base.is_dir() else base.parent
    elif path.is_dir():
        files = _folder_files(source, path)
        base = path
    elif path.is_file():
        files, base = [path], path.parent
    else:
        raise InputError(f"source {source.name!r}: path {str(path)!r} does not exist")
    if not files:
        raise InputError(
            f"source {source.name!r}: path {str(path)!r} has no {source.format} files "
            f"(looked for {', '.join(_SUFFIXES[source.format])})"
        )
    base = base.resolve()
    return base, sorted(os.path.relpath(f.resolve(), base) for f in files)


def _folder_files(source: SourceConfig, folder: Path) -> list[Path]:
    """The files of ``folder`` (recursively) that ``source.format`` reads; the others are named
    in a warning with their count (they used to be skipped without a word)."""
    found = sorted(p for p in folder.rglob("*") if p.is_file())
    files = [p for p in found if _readable(source, p.name)]
    other = [p.relative_to(folder).as_posix() for p in found if not _readable(source, p.name)]
    if other:
        more = f" and {len(other) - _LISTED} more" if len(other) > _LISTED else ""
        log.warning(
            "source %r: %d file(s) in %s are not %s files (%s) and are not read: %s%s",
            source.name, len(other), folder, source.format, ", ".join(_SUFFIXES[source.format]),
            ", ".join(other[:_LISTED]), more,
        )  # fmt: skip
    return files


def _readable(source: SourceConfig, name: str) -> bool:
    return name.lower().endswith(_SUFFIXES[source.format])


def _resolve_url_files(source: SourceConfig) -> tuple[str, list[str]]:
    """`resolve_source_files` for an fsspec URL, listed through datatrove's DataFolder."""
    url = source.path.rstrip("/")
    if glob.has_magic(url):
        magic = min(url.index(c) for c in "*?[" if c in url)
        base = url[: url.rindex("/", 0, magic)]
        folder = get_datafolder(base)
        files = folder.list_files(glob_pattern=url[len(base) + 1 :])
    else:
        base = url
        folder = get_datafolder(base)
        if folder.isfile(""):
            base, name = url.rsplit("/", 1)
            return base, [name]
        if not folder.isdir(""):
            raise InputError(f"source {source.name!r}: path {url!r} does not exist")
        files = [f for f in folder.list_files() if _readable(source, f)]
    if not files:
        raise InputError(
            f"source {source.name!r}: path {url!r} has no {source.format} files "
            f"(looked for {', '.join(_SUFFIXES[source.format])})"
        )
    return base, sorted(files)


def make_reader(
    source: SourceConfig,
    base_dir: Path | str,
    paths_file: Path,
    default_metadata: dict,
    skipped_dir: Path | None = None,
) -> BaseDiskReader:
    """The reader step of `source` (`base_dir` and `paths_file` from `resolve_source_files`)."""
    common = {
        "paths_file": str(paths_file),
        "default_metadata": default_metadata,
        "file_progress": SHOW_PROGRESS,
        "doc_progress": SHOW_PROGRESS,
    }
    if source.format == "warc":
        return StrictWarcReader(str(base_dir), **common)
    skipped = None if skipped_dir is None else str(skipped_dir)
    keys = {"text_key": source.text_column, "id_key": source.id_column, "skipped_dir": skipped}
    if source.format == "parquet":
        return StrictParquetReader(str(base_dir), **common, **keys)
    return StrictJsonlReader(str(base_dir), **common, **keys)


class StrictWarcReader(WarcReader):
    """datatrove's WarcReader, raising `InputError` on a truncated or corrupt WARC file.

    warcio returns a record cut short by the end of the file as if it were whole, so each
    record's bytes are counted against its Content-Length. gzip is left to warcio: through
    Python's GzipFile, a file cut inside its first record reads as an empty archive.
    """

    def read_file(self, filepath: str):
        from datatrove.pipeline.readers.warc import process_record
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        full = self.data_folder.resolve_paths(filepath)
        try:
            compression = None if filepath.endswith(".gz") else self.compression
            with self.data_folder.open(filepath, "rb", compression=compression) as f:
                index = -1
                for index, record in enumerate(ArchiveIterator(f)):
                    with self.track_time():
                        data = process_record(record)
                        _check_complete(record, full, index)
                        document = data and self.get_document_from_dict(data, filepath, index)
                    if document:
                        yield document
                if index < 0 and self.data_folder.size(filepath) > 0:
                    raise InputError(f"corrupt or truncated WARC file {full}: no WARC record")
        # warcio raises AttributeError on a header cut in the middle
        except (EOFError, OSError, zlib.error, ArchiveLoadFailed, AttributeError) as err:
            raise InputError(f"corrupt or truncated WARC file {full}: {err!r}") from err


def _check_complete(record, path: str, index: int) -> None:
    """Raise `InputError` if `record` ended before its declared Content-Length."""
    stream = record.raw_stream
    while stream.read(1 << 16):  # the rest of the record (process_record may skip it)
        pass
    if stream.limit > 0:
        raise InputError(
            f"corrupt or truncated WARC file {path}: record {index} "
            f"({record.rec_headers.get_header('WARC-Target-URI') or record.rec_type}) "
            f"is {stream.limit} bytes short of its Content-Length"
        )


class _SkipRecorder:
    """Counts each skipped record as `dropped_<reason>` and records its file and line/row in
    `skipped_dir/<rank>.jsonl` (read back by `read_skipped`)."""

    def _init_skips(self, skipped_dir: str | None) -> None:
        self.skipped_dir = skipped_dir
        self._rank = 0
        self._warned = 0

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._rank = rank  # names this task's file of skipped lines
        return super().run(data, rank, world_size)

    def _skip(self, full: str, line_no: int, reason: str) -> None:
        self.stat_update(f"dropped_{reason}")
        if self._warned < _MAX_WARNINGS:
            self._warned += 1
            last = self._warned == _MAX_WARNINGS
            more = " (further skipped lines are only counted)" if last else ""
            log.warning("%s, line %d: skipped (%s)%s", full, line_no, reason, more)
        if self.skipped_dir is not None:
            path = Path(self.skipped_dir) / f"{self._rank:05d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"file": full, "line": line_no, "reason": reason}) + "\n")


class StrictJsonlReader(_SkipRecorder, JsonlReader):
    """datatrove's JsonlReader that loses no line silently.

    datatrove reads the file as text, so one invalid UTF-8 byte ends the file after a warning
    (every later line lost, nothing counted), and it skips invalid JSON and empty texts with a
    warning only. Here each line is decoded on its own: a line that cannot become a document is
    counted in the stats as `dropped_<reason>` and recorded with its file and line in
    `skipped_dir/<rank>.jsonl`. A record without a string "text" and a file that cannot be read
    to its end (truncated or corrupt compression) raise `InputError` naming the file and line.

    Reasons: invalid_utf8, blank_line, invalid_json, not_an_object, empty_text and
    cut_last_line (invalid JSON on a last line without a newline: a file cut while written).
    """

    def __init__(self, *args, skipped_dir: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_skips(skipped_dir)

    def read_file(self, filepath: str):
        full = self.data_folder.resolve_paths(filepath)
        for line_no, raw in self._numbered_lines(filepath, full):
            with self.track_time():
                document, reason = self._parse_line(raw, filepath, line_no)
            if document is None:
                self._skip(full, line_no, reason)
                continue
            yield document

    def _numbered_lines(self, filepath: str, full: str):
        """(line number, bytes) of each line; a read error names the file and the last line."""
        line_no = 0
        try:
            with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
                for line_no, raw in enumerate(f, start=1):
                    yield line_no, raw
        # Anything raised while reading bytes is the file's fault: gzip's CRC and EOF errors,
        # zlib and zstd errors.
        except Exception as err:
            raise InputError(
                f"corrupt or truncated JSONL file {full}, after line {line_no}: {err!r}"
            ) from err

    def _parse_line(self, raw: bytes, filepath: str, line_no: int):
        """(Document, None) for a good line, else (None, reason it was skipped)."""
        import orjson

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "invalid_utf8"
        if not text.strip():
            return None, "blank_line"
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None, "invalid_json" if raw.endswith(b"\n") else "cut_last_line"
        if not isinstance(data, dict):
            return None, "not_an_object"
        document = self.get_document_from_dict(data, filepath, line_no - 1)
        return (document, None) if document else (None, "empty_text")

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int | str):
        text = data.get(self.text_key)
        if not isinstance(text, str):
            full = self.data_folder.resolve_paths(source_file)
            got = "missing" if text is None else f"a {type(text).__name__}"
            raise InputError(
                f"{full}, line {int(id_in_file) + 1}: field {self.text_key!r} is {got}, "
                f"expected a string (keys: {sorted(data)})"
            )
        return super().get_document_from_dict(data, source_file, id_in_file)


class StrictParquetReader(_SkipRecorder, ParquetReader):
    """datatrove's ParquetReader that names the file and column on bad input.

    A file Parquet cannot open (corrupt, truncated, not Parquet) or without the text column
    raises `InputError` naming the file (and the columns it has); a text cell that is not a
    string raises naming the file, row and column. Rows whose text is null or empty are
    skipped and counted (`null_text`, `empty_text`) with their row number (1-based) as `line`.
    Other columns become metadata (datatrove's default).
    """

    def __init__(self, *args, skipped_dir: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_skips(skipped_dir)

    def read_file(self, filepath: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        full = self.data_folder.resolve_paths(filepath)
        row = 0
        try:
            with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as pqf:
                columns = pqf.schema_arrow.names
                if self.text_key not in columns:
                    raise InputError(
                        f"Parquet file {full}: no text column {self.text_key!r} "
                        f"(columns: {columns}); set the source's text_column"
                    )
                for batch in pqf.iter_batches(batch_size=self.batch_size):
                    for record in batch.to_pylist():
                        row += 1
                        with self.track_time():
                            document = self._document(record, filepath, full, row)
                        if document is not None:
                            yield document
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"corrupt or unreadable Parquet file {full}, row {row}: {err}") from (
                err
            )

    def _document(self, record: dict, filepath: str, full: str, row: int):
        text = record.get(self.text_key)
        if text is None or text == "":
            self._skip(full, row, "null_text" if text is None else "empty_text")
            return None
        if not isinstance(text, str):
            raise InputError(
                f"Parquet file {full}, row {row}: column {self.text_key!r} holds a "
                f"{type(text).__name__}, expected a string"
            )
        return self.get_document_from_dict(record, filepath, row - 1)


def read_skipped(skipped_dir: Path) -> list[dict]:
    """The lines `StrictJsonlReader` skipped, from every task, sorted by file and line."""
    rows = []
    for path in sorted(skipped_dir.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: (r["file"], r["line"]))
