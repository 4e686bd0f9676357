"""Checkpoint conversion: DCP checkpoints <-> Hugging Face Llama directories.

CLI: ``python -m tools.convert``; see ``tools/convert/README.md``.
"""

from tools.convert.checkpoints import dcp_to_hf, find_checkpoint, hf_to_dcp

__all__ = ["dcp_to_hf", "find_checkpoint", "hf_to_dcp"]
