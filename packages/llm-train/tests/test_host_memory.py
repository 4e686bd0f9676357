import os
import sys

import pytest

from llm_train.host_memory import return_freed_memory_to_os


def test_a_threshold_given_in_the_environment_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert return_freed_memory_to_os() is False


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's (Linux with glibc only)")
def test_the_threshold_is_set_with_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert return_freed_memory_to_os() is True
