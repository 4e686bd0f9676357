"""Session-wide test setup, loaded before any package's tests.

Without a CUDA device the Triton kernels run in Triton's CPU interpreter, so the kernel tests
check the real kernels everywhere (CI sets TRITON_INTERPRET=1 itself; this makes a plain
`uv run pytest` do the same). It must be set before any `@triton.jit` function is defined.
Torch may be absent: llm-tokenize and the core of llm-data are tested without it.
"""

import os

try:
    import torch
except ImportError:
    torch = None

if torch is None or not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
