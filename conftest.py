"""Session-wide test setup, loaded before any package's tests.

Without a CUDA device the Triton kernels run in Triton's CPU interpreter, so the kernel tests
check the real kernels everywhere (CI sets TRITON_INTERPRET=1 itself; this makes a plain
`uv run pytest` do the same). It must be set before any `@triton.jit` function is defined.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
