"""Encode throughput: `encode_batch` on Rust threads, on one thread, and in N processes.

Each is given as wall-clock MB/s and as MB per CPU-second (the per-core rate, which a machine
shared with other jobs distorts far less than wall-clock time).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

_WORKER = {}


@contextmanager
def tokenizers_parallelism(enabled: bool):
    """`tokenizers` reads TOKENIZERS_PARALLELISM at each batch call: "false" runs encode_batch
    on the calling thread only."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if enabled else "false"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def _timed(fn, texts) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process's threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(texts)
    return time.perf_counter() - wall, time.process_time() - cpu


def _init_worker(path: str) -> None:
    from llm_tokenize import load_hf_tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER["tok"] = load_hf_tokenizer(path)


def _encode_chunk(texts: list[str]) -> tuple[list[list[int]], float]:
    cpu = time.process_time()
    ids = [e.ids for e in _WORKER["tok"].encode_batch_fast(texts, add_special_tokens=False)]
    return ids, time.process_time() - cpu


def measure(hf_tokenizer, path: str, texts: list[str], processes: int) -> dict[str, float]:
    """Rust threads (all cores), one thread, and ``processes`` single-threaded processes (ids
    sent back to the parent, as a data loader needs them): MB/s and MB per CPU-second."""
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6

    def encode(batch):
        return hf_tokenizer.encode_batch_fast(batch, add_special_tokens=False)

    encode(texts[:50])  # warm up the thread pool
    with tokenizers_parallelism(True):
        threads = _timed(encode, texts)
    with tokenizers_parallelism(False):
        single = _timed(encode, texts)
    chunks = [texts[i :: processes * 8] for i in range(processes * 8)]
    with ProcessPoolExecutor(processes, initializer=_init_worker, initargs=(path,)) as pool:
        list(pool.map(_encode_chunk, [texts[:10]] * processes))  # start and load
        start = time.perf_counter()
        results = list(pool.map(_encode_chunk, chunks))
        multi = (time.perf_counter() - start, sum(cpu for _, cpu in results))
    out = {"mb": mb}
    for name, (wall, cpu) in (("threads", threads), ("one_thread", single), ("processes", multi)):
        out[f"{name}_mb_s"] = mb / wall
        out[f"{name}_mb_cpu_s"] = mb / cpu
    return out
