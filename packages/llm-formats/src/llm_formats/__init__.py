"""llm-formats: the files one stage writes and another reads, one module per seam.

Standard library only, and it imports no sibling, so every package (torch-free llm-data included)
may import it. Modules, in pipeline order of the files they own:

- ``atomic``: atomic writes (temp file in the same folder, fsync, rename, fsync of the folder)
  and file hashes, for every writer below.
"""

from llm_formats.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
)

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "sha256_file"]
