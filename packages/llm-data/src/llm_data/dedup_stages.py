"""The global dedup stages of a curation run, over every source's filtered documents at once.

Methods run in the order exact -> URL -> MinHash -> substring, each on what the previous one
kept (so a copy kept by one method is never removed by the next in favour of a copy already
gone; substring dedup comes last, as it cuts text that MinHash would compare):

    exact-signatures [T] -> exact-duplicates [P] -> exact-filter [T] (+ url-signatures)
      -> url-duplicates [P] -> url-filter [T] (+ minhash-signatures)
      -> minhash-buckets [bands] -> minhash-clusters [1] -> minhash-filter [T]
      (+ substring-signatures) -> substring-duplicates [P] -> substring-filter [T] (+ final write)

`[T]` stages read documents (`tasks` of the config); a filter stage writes what it keeps to
`<work>/after_<method>/<rank>.jsonl.gz` and computes the next method's signatures in the same
pass, and the last one writes `<output>/<source>/<rank>.jsonl.gz`.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from llm_data.config import CurationConfig
from llm_data.dedup import (
    ExclusionWriter,
    KeyDedupFilter,
    KeyFindDuplicates,
    KeySignature,
    RankJsonlWriter,
)
from llm_data.executors import Stage
from llm_data.minhash import (
    ChooseClusterKeepers,
    MinhashExclusionWriter,
    MultilingualMinhashSignature,
)
from llm_data.substring import (
    CUTS_DIR,
    CutsWriter,
    SentenceFindDuplicates,
    SentenceSignature,
    SentenceSpanFilter,
)

__all__ = ["DEDUP_LOGS", "EXCLUDED_DIR", "build_dedup_stages", "dedup_methods"]

DEDUP_LOGS = "_dedup"  # logs/_dedup/<stage>/ (source names cannot start with "_")
EXCLUDED_DIR = "excluded"  # output_dir/excluded/<method>/<rank>.jsonl.gz


def dedup_methods(config: CurationConfig) -> list[str]:
    """The enabled methods, in the order they run."""
    return [m for m in ("exact", "url", "minhash", "substring") if getattr(config.dedup, m)]


def build_dedup_stages(
    config: CurationConfig, filtered: Path, work: Path, out: Path, after: tuple[str, ...]
) -> list[Stage]:
    """Stages that dedup `filtered/**/*.jsonl.gz` into `out/<source>/` (see module doc).

    Args:
        config: the run's configuration (dedup settings, tasks).
        filtered: every source's filtered documents (`<source>/<rank>.jsonl.gz`).
        work: scratch folder for signatures and intermediate documents.
        out: the output folder; exclusions go to `out/excluded/<method>/`.
        after: the stages that write `filtered` (the first dedup stage waits for them).
    """
    methods = dedup_methods(config)
    tasks = config.tasks
    final_writer = JsonlWriter(str(out), output_filename="${source}/${rank}.jsonl.gz")
    if not methods:
        return [Stage(f"{DEDUP_LOGS}/write", [_reader(filtered), final_writer], tasks, after)]
    steps = _MethodSteps(config, work, out)
    stages: list[Stage] = []
    inputs = [filtered] + [work / f"after_{m}" for m in methods[:-1]]
    for i, (method, folder) in enumerate(zip(methods, inputs, strict=True)):
        if i == 0:
            stages.append(
                Stage(
                    f"{DEDUP_LOGS}/{method}-signatures",
                    [_reader(folder), steps.signature(method)],
                    tasks,
                    after,
                )
            )
        stages += steps.find(method)
        if i + 1 < len(methods):
            tail = [RankJsonlWriter(str(inputs[i + 1])), steps.signature(methods[i + 1])]
        else:
            tail = [final_writer]
        stages.append(
            Stage(
                f"{DEDUP_LOGS}/{method}-filter",
                [_reader(folder), steps.filter(method), *tail],
                tasks,
            )
        )
    for previous, stage in zip(stages, stages[1:], strict=False):
        stage.after = (previous.name,)
    return stages


def _reader(folder: Path) -> JsonlReader:
    return JsonlReader(str(folder), glob_pattern="**/*.jsonl.gz", add_file_path=False)


class _MethodSteps:
    """The datatrove steps of each dedup method, with their work folders."""

    def __init__(self, config: CurationConfig, work: Path, out: Path):
        d = config.dedup
        self.dedup = d
        self.work, self.excluded = work, out / EXCLUDED_DIR
        self.partitions = d.partitions
        self.source_ranks = {s.name: i for i, s in enumerate(config.sources)}
        self.minhash = MinhashConfig(
            n_grams=d.ngram, num_buckets=d.bands, hashes_per_bucket=d.rows, seed=d.seed
        )

    def signature(self, method: str):
        if method == "substring":
            return SentenceSignature(str(self.work / method), self.partitions, self.source_ranks)
        if method == "minhash":
            return MultilingualMinhashSignature(
                str(self.work / "minhash" / "signatures"), self.minhash, self.source_ranks
            )
        return KeySignature(str(self.work / method), method, self.partitions, self.source_ranks)

    def find(self, method: str) -> list[Stage]:
        if method == "substring":
            name = f"{DEDUP_LOGS}/{method}-duplicates"
            return [Stage(name, [SentenceFindDuplicates(str(self.work / method))], self.partitions)]
        if method != "minhash":
            name = f"{DEDUP_LOGS}/{method}-duplicates"
            return [
                Stage(name, [KeyFindDuplicates(str(self.work / method), method)], self.partitions)
            ]
        mh = self.work / "minhash"
        buckets = MinhashDedupBuckets(
            str(mh / "signatures"), str(mh / "buckets"), config=self.minhash
        )
        clusters = MinhashDedupCluster(
            str(mh / "buckets"), str(mh / "clusters"), config=self.minhash, save_cluster_id=True
        )
        keepers = ChooseClusterKeepers(str(mh / "signatures"), str(mh / "clusters"))
        return [
            Stage(f"{DEDUP_LOGS}/minhash-buckets", [buckets], self.minhash.num_buckets),
            Stage(f"{DEDUP_LOGS}/minhash-clusters", [clusters, keepers], 1),
        ]

    def filter(self, method: str):
        excluded = str(self.excluded / method)
        if method == "substring":
            return SentenceSpanFilter(
                str(self.work / method),
                self.dedup.substring_min_words,
                self.dedup.substring_min_doc_words,
                ExclusionWriter(excluded),
                CutsWriter(str(self.excluded / method / CUTS_DIR)),
            )
        if method != "minhash":
            return KeyDedupFilter(str(self.work / method), method, ExclusionWriter(excluded))
        clusters = str(self.work / "minhash" / "clusters")
        return MinhashDedupFilter(
            clusters,
            exclusion_writer=MinhashExclusionWriter(excluded, clusters),
            load_cluster_ids=True,
        )
