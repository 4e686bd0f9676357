"""An endless, exactly resumable batch loader over MDS token shards (extra [shards]).

One mosaicml-streaming `Stream` per source. The mixture (`llm_data.training_data.mixture`) turns
proportions and epochs into samples per source, `Stream(choose=n)`: streaming picks those samples
(whole repeats plus a random remainder per shard) and shuffles them. Rank and world size come
from the environment that torchrun sets (what `torch.distributed` uses), read by streaming.

The position is global: streaming orders an epoch's samples once for all ranks (the order
depends on seed, epoch, streams and `num_canonical_nodes`, not on the world size) and deals
them out rank by rank, so a global batch of batch_size x world_size samples is always the next
slice of that order. That is what lets a state resume on another world size with the same
global batch (see the README for the state format and the rules).

Phases. Each mixture phase is its own `StreamingDataset` (streams with that phase's `choose`,
shuffle seed `seed + PHASE_SEED_STRIDE x phase`), built when the first batch of the phase is
drawn, after the previous phase's dataset is closed. The state is one number, `batch`: global
batches taken since the start. Everything else follows from it and the arguments: the phase is
the one whose steps hold batch `batch` (`until_step x batches_per_step` batches), and inside it
`divmod(batch - phase start, steps_per_epoch)` is (streaming epoch, global batch in that epoch),
the `sample_in_epoch` streaming is positioned at. So a run killed in phase 2 rebuilds phase 2's
dataset and seeks it to the same sample as the uninterrupted run reached. The sequence-length
schedule needs no state either: batch `batch` belongs to step `batch // batches_per_step + 1`,
whose `seq_len` (a divisor s of the full T) says to cut each (T + 1)-token sample into T / s rows
of s + 1 tokens (consecutive rows share one token, the label of the row before): the same
samples and tokens per batch, T / s times the rows.

Object storage. `shards_dir` may be a URL (`s3://bucket/run/shards`, extra [s3]): each stream is
then streaming's `Stream(remote=<url>/<source>, local=<cache_dir>/<source>)`, which downloads a
shard into the local cache when a sample of it is first drawn (streaming's boto3 client, with
credentials and endpoint from the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL_S3` or streaming's own `S3_ENDPOINT_URL`). The small files, `shard_stats.json`
and each source's `index.json`, are fetched into the cache first (atomically), so everything
below reads them as it reads local shards. Shards that are not local yet cannot be stat'ed or
hashed up front: streaming checks each downloaded shard against the index's hash instead
(`validate_hash`), so batches are the same as from the local copy and a corrupt object is an
error naming it.

Shards are checked against their index.json (`llm_data.training_data.shard_check`): presence
and size on every rank before a dataset is built (stat calls), and each shard's xxh64 or sha1
hash once per run, by one rank in a background thread; a mismatch stops the run at the next
batch with an error naming the shard file and the index.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from llm_data.readers import InputError
from llm_data.training_data.mixture import (
    MixtureConfig,
    MixtureTable,
    mixture_table,
    resolve_mixture,
)
from llm_data.training_data.remote import filesystem, is_url
from llm_data.training_data.shard_check import ShardHashCheck, check_shards
from llm_formats.jsonl import FormatError
from llm_formats.shards import SHARD_STATS_FILE, read_shard_stats, source_dir, source_samples

__all__ = ["TokenLoader", "build_loader"]

PREFIX_LOCK_FILE = "llm_data-streaming-prefix.lock"  # in the temp dir; see _prefix_lock
log = logging.getLogger(__name__)

STATE_VERSION = 3  # 2: one dataset, (epoch, sample_in_epoch); 1 (no "version"): per-rank counts
# Fixed, so the sample order never depends on the node count: with 1 canonical node streaming
# partitions every world (any number of nodes divides into it) with the same `orig` algorithm.
NUM_CANONICAL_NODES = 1
# Phase p shuffles with seed + stride x p: streaming seeds epoch e with seed + e, so a stride
# larger than any epoch count keeps phases from replaying another phase's epoch order.
PHASE_SEED_STRIDE = 1_000_003
# Samples streaming's read-ahead thread may mark ready ahead of the main thread (see
# _build_dataset); local shards, so this costs no memory or download.
PREDOWNLOAD = 4096
# Must match for a state to resume; batch size and world size are checked as their product.
_MUST_MATCH = (
    "seed",
    "shuffle",
    "seq_len",
    "batches_per_step",
    "mixture",
    "seq_len_schedule",
    "num_canonical_nodes",
)


def build_loader(
    shards_dir: str | Path,
    *,
    seq_len: int,
    batch_size: int,
    proportions: dict[str, float] | None = None,
    mixture: MixtureConfig | None = None,
    steps: int | None = None,
    batches_per_step: int = 1,
    seed: int = 0,
    shuffle: bool = True,
    cache_dir: str | Path | None = None,
) -> TokenLoader:
    """Build an endless loader of `dict(input_ids, labels)` LongTensor[B, T] batches.

    Args:
        shards_dir: output of `tokenize_to_shards` (one MDS folder per source).
        seq_len: T; at most the `seq_len` the shards were written with (longer samples are cut).
        batch_size: B, per rank; a batch of all ranks takes B x world size samples (a shorter
            `seq_len` phase yields B x T / seq_len rows of the same samples).
        proportions: shorthand for `mixture=MixtureConfig(proportions=...)`; None (and no
            mixture) mixes sources by size, every sample once per epoch.
        mixture: proportions or epochs per source, phases by step, sequence-length schedule.
        steps: training steps of the run: the budget that proportions and epochs of the last
            phase refer to (None: that phase's epoch is every sample of its sources once).
        batches_per_step: batches per training step (gradient accumulation), to place the
            phases' `until_step` in batches.
        seed: shuffle seed (same seed, same batches).
        shuffle: shuffle samples within and across shards, differently each epoch.
        cache_dir: with a URL `shards_dir` (`s3://...`), the local folder streaming downloads
            shards into (per node; reused by a resumed run). Not used for a local one.
    """
    if proportions is not None and mixture is not None:
        raise ValueError("build_loader: give proportions or mixture, not both")
    return TokenLoader(
        shards_dir,
        seq_len=seq_len,
        batch_size=batch_size,
        mixture=mixture or MixtureConfig(proportions=dict(proportions or {})),
        steps=steps,
        batches_per_step=batches_per_step,
        seed=seed,
        shuffle=shuffle,
        cache_dir=cache_dir,
    )


class TokenLoader:
    """Iterates forever over batches; `state_dict()` after k batches resumes at batch k + 1.

    Each epoch of a phase holds `steps_per_epoch` global batches of `global_batch_size`
    samples; the last `dropped_per_epoch` samples of each epoch's order are skipped, on every
    rank alike. Call `close()` (or drop the object) before building another loader on the same
    shards in the same process: streaming keeps one live dataset per local folder.
    """

    def __init__(
        self,
        shards_dir,
        *,
        seq_len,
        batch_size,
        mixture,
        steps,
        batches_per_step,
        seed,
        shuffle,
        cache_dir=None,
    ):
        for name, value in (("batch_size", batch_size), ("batches_per_step", batches_per_step)):
            if value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1")
        self.remote = str(shards_dir).rstrip("/") if is_url(shards_dir) else None
        if self.remote is not None and cache_dir is None:
            raise ValueError(f"shards_dir={shards_dir!r} is remote: give a local cache_dir")
        self.shards_dir = Path(cache_dir if self.remote else shards_dir).expanduser().resolve()
        if self.remote is not None:
            _fetch(self.remote, self.shards_dir, SHARD_STATS_FILE)
        self.seq_len, self.batch_size, self.seed, self.shuffle = seq_len, batch_size, seed, shuffle
        self.mixture, self.steps, self.batches_per_step = mixture, steps, batches_per_step
        meta = _read_stats(self.shards_dir)
        if not 1 <= seq_len <= meta["seq_len"]:
            raise ValueError(
                f"seq_len={seq_len!r} is invalid: shards in {self.shards_dir} hold samples for "
                f"seq_len <= {meta['seq_len']}"
            )
        _check_seq_lens(mixture, seq_len)
        self.world_size = _world_size()
        self.global_batch_size = batch_size * self.world_size
        self.available = source_samples(meta)
        self.phases = resolve_mixture(
            self.available, mixture, samples_per_step=self._samples_per_step, steps=steps
        )
        for i, phase in enumerate(self.phases):
            if phase.epoch_size < self.global_batch_size:
                raise ValueError(
                    f"mixture phase {i} has {phase.epoch_size} samples per epoch, fewer than "
                    f"batch_size={batch_size} x world_size={self.world_size}"
                )
        sources = sorted({s for phase in self.phases for s in phase.choose})
        self.validate_hash = None  # local shards: ShardHashCheck hashes them once per run
        if self.remote is not None:  # not downloaded yet: streaming checks each as it arrives
            for source in sources:
                _fetch(self.remote, self.shards_dir, f"{self._relative(source)}/index.json")
            self.validate_hash = _index_hash_algo(self.shards_dir, sources)
            records = []
        else:
            records = [r for s in sources for r in check_shards(source_dir(self.shards_dir, s))]
        self.shard_hashes = ShardHashCheck(records, _rank(), self.world_size)
        self.dataset, self._dataset_phase = None, None
        self.batch = 0  # global batches taken since the start: the whole position

    @property
    def _samples_per_step(self) -> int:
        return self.global_batch_size * self.batches_per_step

    # --- where batch number b is ---------------------------------------------------------

    def _phase_of(self, batch: int) -> int:
        for i, phase in enumerate(self.phases):
            if phase.end_step is None or batch < phase.end_step * self.batches_per_step:
                return i
        raise AssertionError("the last phase is open-ended")

    def _locate(self, batch: int) -> tuple[int, int, int]:
        """(phase, streaming epoch, sample_in_epoch of all ranks) of global batch `batch`."""
        i = self._phase_of(batch)
        offset = batch - self.phases[i].start_step * self.batches_per_step
        epoch, k = divmod(offset, self._steps_per_epoch(i))
        return i, epoch, k * self.global_batch_size

    def _steps_per_epoch(self, phase: int) -> int:
        return self.phases[phase].epoch_size // self.global_batch_size

    def _seq_len_of(self, batch: int) -> int:
        return self.mixture.seq_len_at(batch // self.batches_per_step + 1, self.seq_len)

    @property
    def phase(self) -> int:
        """Mixture phase of the next batch."""
        return self._phase_of(self.batch)

    @property
    def epoch_size(self) -> int:
        """Samples per epoch of the next batch's phase."""
        return self.phases[self.phase].epoch_size

    @property
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch(self.phase)

    @property
    def dropped_per_epoch(self) -> int:
        return self.epoch_size - self.steps_per_epoch * self.global_batch_size

    # --- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict]:
        import torch

        while True:
            phase, epoch, sample_in_epoch = self._locate(self.batch)
            dataset = self._dataset_for(phase)
            self._seek(dataset, phase, epoch, sample_in_epoch)
            samples = iter(dataset)
            # Stop at the epoch's last full global batch (past it streaming pads ranks with
            # repeats) or at the phase's end, whichever comes first.
            left = self._steps_per_epoch(phase) - sample_in_epoch // self.global_batch_size
            end = self.phases[phase].end_step
            if end is not None:
                left = min(left, end * self.batches_per_step - self.batch)
            for _ in range(left):
                self.shard_hashes.check()  # a corrupt shard found so far stops the run here
                rows = [s["tokens"][: self.seq_len + 1] for s in islice(samples, self.batch_size)]
                if len(rows) < self.batch_size:
                    raise RuntimeError(
                        f"streaming ended phase {phase} epoch {epoch} early at batch {self.batch}"
                        f" (world size {self.world_size}): a streaming bug"
                    )
                tokens = torch.from_numpy(_rows(np.stack(rows), self._seq_len_of(self.batch)))
                self.batch += 1  # before yielding: the state after a batch points past it
                yield {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}

    def _dataset_for(self, phase: int):
        if self._dataset_phase != phase:
            self.close()
            choose = self.phases[phase].choose
            streams = {self._stream(s): n for s, n in choose.items() if n > 0}
            seed = self._phase_seed(phase)
            self.dataset = _build_dataset(
                streams, self.batch_size, seed, self.shuffle, self.validate_hash
            )
            self._dataset_phase = phase
            if self.dataset.epoch_size != self.phases[phase].epoch_size:
                raise RuntimeError(
                    f"streaming made an epoch of {self.dataset.epoch_size} samples for phase "
                    f"{phase}, not the {self.phases[phase].epoch_size} chosen"
                )
        return self.dataset

    def _relative(self, source: str) -> str:
        return source_dir(self.shards_dir, source).relative_to(self.shards_dir).as_posix()

    def _stream(self, source: str) -> tuple[str, str | None]:
        """(local folder, remote URL or None) of one source's stream."""
        remote = f"{self.remote}/{self._relative(source)}" if self.remote else None
        return str(source_dir(self.shards_dir, source)), remote

    def _phase_seed(self, phase: int) -> int:
        return self.seed + PHASE_SEED_STRIDE * phase

    def _seek(self, dataset, phase: int, epoch: int, sample_in_epoch: int) -> None:
        # Always position streaming explicitly, so a fresh and a resumed run take the same path.
        # streaming reads `sample_in_epoch` as the count of all ranks; it ignores a resume state
        # whose epoch is before its own epoch counter (it would start that next epoch at 0), so
        # the counter is set too.
        dataset.next_epoch = epoch
        dataset.load_state_dict(
            {
                "epoch": epoch,
                "sample_in_epoch": sample_in_epoch,
                "num_canonical_nodes": NUM_CANONICAL_NODES,
                "shuffle_seed": self._phase_seed(phase),
                "initial_physical_nodes": None,  # only streaming's `relaxed` path reads it
            }
        )

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Global position after the last yielded batch (the same on every rank), plus what
        must match when resuming. `phase`, `epoch` and `sample_in_epoch` follow from `batch`
        (recorded to read, and checked on load)."""
        self.shard_hashes.check()
        phase, epoch, sample_in_epoch = self._locate(self.batch)
        return {
            "version": STATE_VERSION,
            "batch": self.batch,
            "phase": phase,
            "epoch": epoch,
            "sample_in_epoch": sample_in_epoch,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "batches_per_step": self.batches_per_step,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "seq_len": self.seq_len,
            "mixture": [phase.to_dict() for phase in self.phases],
            "seq_len_schedule": [[p.until_step, p.seq_len] for p in self.mixture.seq_len_schedule],
            "num_canonical_nodes": NUM_CANONICAL_NODES,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at `state`, saved by any rank of a run with the same arguments and the same
        global batch (batch_size x world_size; the world size itself may differ).

        Raises:
            ValueError: naming every setting that differs, when the state cannot resume exactly.
        """
        mine = self.state_dict()
        version = state.get("version", 1)
        if version != STATE_VERSION:
            raise ValueError(
                f"loader state version {version} is not {STATE_VERSION}: "
                + (
                    "it does not record the world size, and its sample count was per rank"
                    if version == 1
                    else "it has no global batch count for mixture phases"
                )
                + ", so it cannot resume exactly; restart the data position or resume with the "
                "llm-data that saved it"
            )
        differ = [
            f"{key}={state.get(key)!r} (now {mine[key]!r})"
            for key in _MUST_MATCH
            if key != "mixture" and state.get(key) != mine[key]
        ]
        if state["batch_size"] * state["world_size"] != self.global_batch_size:
            differ.append(
                f"global batch world_size={state['world_size']} x batch_size={state['batch_size']}"
                f" (now world_size={self.world_size} x batch_size={self.batch_size})"
            )
        rebudgeted = False
        if not differ:
            differ, rebudgeted = self._mixture_differences(state)
        if differ:
            raise ValueError("loader state cannot resume exactly, saved with " + ", ".join(differ))
        self.batch = self._checked_batch(state, positioned=not rebudgeted)

    def _mixture_differences(self, state: dict) -> tuple[list[str], bool]:
        """What differs in the phases drawn so far, and whether it is only the budget (`steps`)
        of the open-ended last phase the state is in.

        Phases after the state's are not drawn yet and may change: an uninterrupted run with the
        new ones took the same batches so far. A new budget changes the last phase's `choose`:
        the loader goes on from the same batch count in the new phase's order (not the batches
        an uninterrupted run would take: that run's last phase was another mix from its start).
        """
        saved, mine = state.get("mixture") or [], [p.to_dict() for p in self.phases]
        phase = state.get("phase")
        if not isinstance(phase, int) or not 0 <= phase < min(len(saved), len(mine)):
            return [f"mixture={saved!r} (now {mine!r})"], False
        if saved[: phase + 1] == mine[: phase + 1]:
            return [], False
        last = phase == len(saved) - 1 == len(mine) - 1
        same_spec = {**saved[phase], "choose": None} == {**mine[phase], "choose": None}
        if last and same_spec and saved[:phase] == mine[:phase]:
            log.warning(
                "loader: resuming at batch %d in the last mixture phase with another budget "
                "(steps): its samples per source change from %s to %s; from here the order is "
                "the new phase's, not what an uninterrupted run would draw",
                state["batch"], saved[phase]["choose"], mine[phase]["choose"],
            )  # fmt: skip
            return [], True
        return [
            f"mixture phases up to {phase} {saved[: phase + 1]!r} (now {mine[: phase + 1]!r})"
        ], False

    def _checked_batch(self, state: dict, positioned: bool) -> int:
        """`state["batch"]`, checked to lie where the state says (its phase only, when the
        phase's epoch size changed with the budget)."""
        batch = state["batch"]
        if not isinstance(batch, int) or batch < 0:
            raise ValueError(f"loader state batch={batch!r} is invalid: expected an integer >= 0")
        where = dict(zip(("phase", "epoch", "sample_in_epoch"), self._locate(batch), strict=True))
        if not positioned:
            where = {"phase": where["phase"]}
        wrong = {k: state.get(k) for k, v in where.items() if state.get(k) != v}
        if wrong:
            raise ValueError(
                f"loader state batch={batch} is at {where}, but the state says {wrong}: "
                "it was edited or saved by another loader"
            )
        return batch

    def mixture_table(self) -> MixtureTable:
        """The MPT-style table of this loader's mixture over its `steps` (see `mixture_table`)."""
        if self.steps is None:
            raise ValueError("mixture_table needs a budget: build the loader with steps=")
        return mixture_table(
            self.available,
            self.mixture,
            seq_len=self.seq_len,
            samples_per_step=self._samples_per_step,
            steps=self.steps,
        )

    def close(self) -> None:
        """Release streaming's shared memory so another loader can use the same shards."""
        dataset, self.dataset, self._dataset_phase = self.dataset, None, None
        if dataset is not None and hasattr(dataset, "_iterator"):
            dataset._iterator.exit()
        if dataset is not None:
            dataset.close_maps()
        del dataset


def _rows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """(B, T + 1) samples as int64 rows of seq_len + 1 tokens: (B x T / seq_len, seq_len + 1).

    Row j of a sample is its tokens [j s, (j + 1) s]: two block copies into one int64 buffer
    (a strided sliding-window view cast in one go was 1.6x slower)."""
    batch, width = tokens.shape[0], tokens.shape[1] - 1
    if seq_len == width:
        return tokens.astype(np.int64)
    k = width // seq_len
    out = np.empty((batch, k, seq_len + 1), np.int64)
    out[:, :, :seq_len] = tokens[:, :width].reshape(batch, k, seq_len)
    out[:, :, seq_len] = tokens[:, seq_len::seq_len]  # each row's last label: next row's first
    return out.reshape(-1, seq_len + 1)


def _check_seq_lens(mixture: MixtureConfig, seq_len: int) -> None:
    for p in mixture.seq_len_schedule:
        if p.seq_len > seq_len or seq_len % p.seq_len:
            raise ValueError(
                f"seq_len_schedule: seq_len={p.seq_len} (until step {p.until_step}) must divide "
                f"the loader's seq_len={seq_len}, so each sample splits into whole rows"
            )


def _world_size() -> int:
    # The environment streaming partitions by (torchrun's WORLD_SIZE, 1 without it).
    from streaming.base.distributed import get_world_size

    return get_world_size()


def _rank() -> int:
    from streaming.base.distributed import get_rank

    return get_rank()


def _read_stats(shards_dir: Path) -> dict:
    try:
        return read_shard_stats(shards_dir)
    except FormatError as err:
        raise InputError(str(err)) from err


def _fetch(remote: str, local: Path, name: str) -> Path:
    """Copy the small file `<remote>/<name>` to `<local>/<name>` (through a temporary name, so
    a rank reading it beside another rank that fetches it sees all of it or none)."""
    fs, path = filesystem(f"{remote}/{name}")
    target = local / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(fs.cat_file(path))
    except FileNotFoundError:
        raise InputError(f"{remote}/{name} is missing: {remote} holds no complete shards") from None
    os.replace(tmp, target)
    return target


def _index_hash_algo(shards_dir: Path, sources: list[str]) -> str | None:
    """The hash the shards' indexes record (the writer uses one), for streaming's
    `validate_hash`; None when they record none."""
    import json

    for source in sources:
        index = json.loads((source_dir(shards_dir, source) / "index.json").read_text())
        for shard in index["shards"]:
            hashes = (shard.get("zip_data") or shard["raw_data"]).get("hashes") or {}
            for algo in ("xxh64", "sha1"):
                if algo in hashes:
                    return algo
    return None


@contextlib.contextmanager
def _prefix_lock():
    """Hold a machine-wide lock while this node's local leader builds a StreamingDataset.

    streaming registers a dataset under the first shared-memory prefix free in /dev/shm: every
    rank of the node scans on its own, then the local leader creates the prefix and the others
    look it up. Another job on the machine that takes a prefix in between makes the leader's
    create fail (FileExistsError) or a rank find the other job's registration ("shared memory
    registered does not match local leader"); the rank that failed leaves streaming's barriers
    and its peer sees gloo's "connection closed" or waits forever. The lock keeps the loaders
    of other llm_data jobs from registering meanwhile (a streaming user that does not take it
    can still race). Only the leader takes it: the other ranks must reach streaming's barriers.
    """
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        yield
        return
    import fcntl
    import tempfile

    with open(os.path.join(tempfile.gettempdir(), PREFIX_LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_dataset(
    streams: dict[tuple[str, str | None], int],
    batch_size: int,
    seed: int,
    shuffle: bool,
    validate_hash: str | None = None,
):
    """A StreamingDataset drawing `n` samples per epoch from each MDS folder (`choose`), given
    as (local, remote or None), reading local samples through memory maps (see
    `llm_data.training_data.mapped`)."""
    # No clean_stale_shared_memory(): it unlinks the shared memory of every streaming job on the
    # machine, live ones included (under torchrun, what another local rank just created).
    # Streams here are local-only, for which streaming never refuses a folder because of stale
    # memory: it takes the next free prefix, so a crashed run costs a few small /dev/shm files.
    with _prefix_lock():
        return _new_dataset(streams, batch_size, seed, shuffle, validate_hash)


def _new_dataset(streams, batch_size: int, seed: int, shuffle: bool, validate_hash):
    from streaming import Stream

    from llm_data.training_data.mapped import MappedStreamingDataset

    return MappedStreamingDataset(
        streams=[
            Stream(local=local, remote=remote, choose=n) for (local, remote), n in streams.items()
        ],
        batch_size=batch_size,
        shuffle=shuffle,
        shuffle_seed=seed,
        num_canonical_nodes=NUM_CANONICAL_NODES,
        validate_hash=validate_hash,  # local: None, ShardHashCheck does it once, naming the file
        # streaming's read-ahead thread only marks local samples ready (nothing to download),
        # but at its default (8 batches) it keeps pausing 7 ms, and so does the main thread
        # waiting on it: that capped the loader at ~4,500 samples/s.
        predownload=max(8 * batch_size, PREDOWNLOAD),
    )
