"""Input readers: datatrove's WARC and JSONL readers that fail loudly on bad input.

datatrove's readers log and skip bad records; for a curated training set a truncated file or a
record without text is a bug to fix, so these raise `InputError` naming the file (and line).
"""

from __future__ import annotations

import glob
import os
import zlib
from pathlib import Path

from datatrove.pipeline.readers import JsonlReader, WarcReader

from llm_data.config import SourceConfig

__all__ = ["InputError", "StrictJsonlReader", "StrictWarcReader", "resolve_source_files"]

_SUFFIXES = {
    "warc": (".warc", ".warc.gz", ".warc.zst"),
    "jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst"),
}


class InputError(ValueError):
    """Bad input data: a missing path, a corrupt file or a malformed record."""


def resolve_source_files(source: SourceConfig) -> tuple[Path, list[str]]:
    """Return (base folder, sorted file paths relative to it) for a file, folder or glob.

    Raises:
        InputError: the path matches no file of the source's format.
    """
    path = Path(source.path).expanduser()
    if glob.has_magic(source.path):
        files = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
        base = Path(source.path.split("*")[0].split("?")[0].split("[")[0])
        base = base if base.is_dir() else base.parent
    elif path.is_dir():
        files = [
            p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES[source.format])
        ]
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


class StrictJsonlReader(JsonlReader):
    """datatrove's JsonlReader, raising `InputError` for a record without a string "text".

    A truncated compressed file also raises; a line that is not valid JSON is still skipped
    with a warning, as datatrove does.
    """

    def read_file(self, filepath: str):
        try:
            yield from super().read_file(filepath)
        except (EOFError, zlib.error) as err:
            full = self.data_folder.resolve_paths(filepath)
            raise InputError(f"corrupt or truncated JSONL file {full}: {err}") from err

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
