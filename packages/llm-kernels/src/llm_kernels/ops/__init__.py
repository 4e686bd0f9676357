"""Triton implementations, one module per op (kernels, launch code, custom-op registration)."""
