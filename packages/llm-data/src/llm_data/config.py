"""Typed configuration for curation: one `SourceConfig` per input, one `CurationConfig` per run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "C4Config",
    "ClassifierConfig",
    "CurationConfig",
    "DecontaminationConfig",
    "DedupConfig",
    "FineWebConfig",
    "GopherConfig",
    "GopherRepetitionConfig",
    "PIIConfig",
    "RUNTIME_FIELDS",
    "RayConfig",
    "ShardConfig",
    "SlurmConfig",
    "SourceConfig",
]

# Languages with a word tokenizer and stop words in `quality.py` (ko needs the [korean] extra);
# every language of the handbook corpus. Others are kept and counted as unsupported.
SUPPORTED_LANGUAGES = (
    "ar", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fr", "hr", "id", "it", "ja", "ko",
    "nb", "nl", "pl", "ro", "sv", "tr", "zh",
)  # fmt: skip
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _fail(field_name: str, value: object, allowed: str) -> None:
    raise ValueError(f"{field_name}={value!r} is invalid: expected {allowed}")


@dataclass(kw_only=True)
class SourceConfig:
    """One input source: a file, a directory or a glob of WARC, JSONL or Parquet files.

    Attributes:
        name: output sub-directory and stream name (letters, digits, `_ . -`).
        path: a file, a directory (searched recursively for the format's files) or a glob;
            local, or an fsspec URL (`s3://bucket/crawl/`, `memory://...`).
        format: "warc" (HTML pages, extracted with Trafilatura), "jsonl" ({"id", "text"}
            lines) or "parquet" (one document per row).
        quality_filters: run language ID and the quality filters (web: yes; books/code: no).
        text_column: the column (JSONL/Parquet key) holding the text.
        id_column: the column holding the document id (Parquet/JSONL; missing: file + row).
    """

    name: str
    path: str
    format: Literal["warc", "jsonl", "parquet"]
    quality_filters: bool = True
    text_column: str = "text"
    id_column: str = "id"

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            _fail("source.name", self.name, "letters, digits, '_', '.', '-' (no '/')")
        if not self.path:
            _fail(f"source[{self.name}].path", self.path, "a non-empty file, directory or glob")
        if self.format not in ("warc", "jsonl", "parquet"):
            _fail(f"source[{self.name}].format", self.format, "'warc', 'jsonl' or 'parquet'")
        for key in ("text_column", "id_column"):
            if not getattr(self, key):
                _fail(f"source[{self.name}].{key}", getattr(self, key), "a column name")


@dataclass(kw_only=True)
class GopherConfig:
    """Main Gopher quality thresholds (Rae et al. 2021); see datatrove's GopherQualityFilter."""

    enabled: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: int = 3  # not applied to ja/zh, whose words are 1-2 characters
    max_avg_word_length: int = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    max_non_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.min_doc_words <= self.max_doc_words:
            _fail("gopher.min_doc_words", self.min_doc_words, "0 <= min_doc_words <= max_doc_words")
        if not 0 < self.min_avg_word_length <= self.max_avg_word_length:
            _fail("gopher.min_avg_word_length", self.min_avg_word_length, "0 < min <= max")
        for name in (
            "max_symbol_word_ratio",
            "max_bullet_lines_ratio",
            "max_ellipsis_lines_ratio",
            "max_non_alpha_words_ratio",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                _fail(f"gopher.{name}", value, "a ratio in [0, 1]")
        if self.min_stop_words < 0:
            _fail("gopher.min_stop_words", self.min_stop_words, "an integer >= 0")


@dataclass(kw_only=True)
class GopherRepetitionConfig:
    """Gopher's repetition rules (Rae et al. 2021, table A1), datatrove's GopherRepetitionFilter,
    run per language with that language's word tokenizer. A document is dropped when one share
    exceeds its threshold (0 turns a rule off).

    Attributes:
        dup_line_frac: lines that repeat an earlier line, over all lines.
        dup_para_frac: paragraphs (split on blank lines) that repeat an earlier one.
        dup_line_char_frac: characters in repeated lines, over all characters.
        dup_para_char_frac: characters in repeated paragraphs, over all characters.
        top_ngram_char_frac: n -> the most frequent word n-gram's characters (x its count),
            over all characters.
        dup_ngram_char_frac: n -> characters in word n-grams that occur again, over all
            characters.
    """

    enabled: bool = False
    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16}
    )
    dup_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )

    def __post_init__(self) -> None:
        for name in ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                _fail(f"gopher_repetition.{name}", getattr(self, name), "a ratio in [0, 1]")
        for name in ("top_ngram_char_frac", "dup_ngram_char_frac"):
            table = {int(n): float(v) for n, v in dict(getattr(self, name)).items()}
            for n, value in table.items():
                if n < 1 or not 0.0 <= value <= 1.0:
                    _fail(f"gopher_repetition.{name}[{n}]", value, "n >= 1 and a ratio in [0, 1]")
            setattr(self, name, dict(sorted(table.items())))


@dataclass(kw_only=True)
class C4Config:
    """C4's rules (Raffel et al. 2020), datatrove's C4QualityFilter: keep lines that end in
    terminal punctuation and have `min_words_per_line` words, then drop the page if fewer than
    `min_sentences` sentences are left or it contains "lorem ipsum" or a curly bracket.

    Not applied to ja/zh (C4's punctuation list has no `。`); those pages are kept and counted.
    """

    enabled: bool = False
    min_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_no_terminal_punct: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    remove_citations: bool = True

    def __post_init__(self) -> None:
        for name in ("min_sentences", "min_words_per_line", "max_word_length"):
            if getattr(self, name) < 0:
                _fail(f"c4.{name}", getattr(self, name), "an integer >= 0 (0 turns it off)")


@dataclass(kw_only=True)
class FineWebConfig:
    """FineWeb's own rules (Penedo et al. 2024), datatrove's FineWebQualityFilter.

    Attributes:
        line_punct_ratio: drop when fewer lines than this end in terminal punctuation.
        short_line_ratio: drop when more lines than this have at most `short_line_length` chars.
        char_duplicates_ratio: drop when more characters than this sit in duplicated lines.
        new_line_ratio: drop when there are more newlines per word than this (lists).
    """

    enabled: bool = False
    line_punct_ratio: float = 0.12
    short_line_ratio: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3

    def __post_init__(self) -> None:
        for name in ("line_punct_ratio", "short_line_ratio", "char_duplicates_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                _fail(f"fineweb.{name}", getattr(self, name), "a ratio in [0, 1]")
        if self.short_line_length < 0:
            _fail("fineweb.short_line_length", self.short_line_length, "an integer >= 0")
        if self.new_line_ratio < 0:
            _fail("fineweb.new_line_ratio", self.new_line_ratio, "a number >= 0")


@dataclass(kw_only=True)
class ClassifierConfig:
    """A trained quality classifier (`llm-data train-classifier`) as a filter, after the rule
    filters, on sources with quality_filters=True. Every document it sees gets
    `metadata["quality_score"]`, the model's probability of the positive label.

    Attributes:
        enabled: run it (off by default).
        model: the fastText `.bin`; its card (`<stem>.card.json`) must be beside it and its
            sha256 must match, or curation refuses to start.
        threshold: keep documents whose score is >= this (exactly one of the two).
        top_fraction: keep the best-scoring fraction of each source (a histogram pass over
            the source first: `llm_data.classifier_filter`).
    """

    enabled: bool = False
    model: str = ""
    threshold: float | None = None
    top_fraction: float | None = None

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if not self.model:
            _fail("classifier.model", self.model, "the path of a trained fastText .bin")
        if (self.threshold is None) == (self.top_fraction is None):
            _fail("classifier.threshold", self.threshold, "exactly one of threshold, top_fraction")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            _fail("classifier.threshold", self.threshold, "a probability in [0, 1]")
        if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
            _fail("classifier.top_fraction", self.top_fraction, "a fraction in (0, 1]")


@dataclass(kw_only=True)
class PIIConfig:
    """Mask personal data in every source (after the quality filters, before dedup).

    Attributes:
        enabled: run the masking step.
        emails: replace e-mail addresses (datatrove's pattern) with `email@example.com`.
        ips: replace public IP addresses (private/loopback ones are kept) with unused ones.
        phones: replace phone numbers (found with `phonenumbers`) with `phone_replacement`.
        phone_region: ISO region for numbers written without `+country` (e.g. "US");
            empty: only international `+...` numbers are found.
        phone_replacement: what a phone number becomes.
    """

    enabled: bool = True
    emails: bool = True
    ips: bool = True
    phones: bool = False
    phone_region: str = ""
    phone_replacement: str = "<PHONE>"

    def __post_init__(self) -> None:
        if self.phone_region and not re.fullmatch(r"[A-Z]{2}", self.phone_region):
            _fail("pii.phone_region", self.phone_region, "'' or an ISO region such as 'US'")


@dataclass(kw_only=True)
class DecontaminationConfig:
    """Drop documents that share a word n-gram with an eval item (GPT-3's 13-gram test).

    Attributes:
        eval_paths: eval JSONL files or folders (`{task, contexts, choices, gold}` items);
            empty turns decontamination off.
        ngram: n-gram length in words.
        min_words: items shorter than `ngram` are matched whole if they have this many words,
            and ignored if shorter.
    """

    eval_paths: tuple[str, ...] = ()
    ngram: int = 13
    min_words: int = 8

    def __post_init__(self) -> None:
        self.eval_paths = tuple(self.eval_paths)
        if self.ngram < 1:
            _fail("decontamination.ngram", self.ngram, "an integer >= 1")
        if not 1 <= self.min_words <= self.ngram:
            _fail("decontamination.min_words", self.min_words, "an integer in [1, ngram]")


@dataclass(kw_only=True)
class DedupConfig:
    """Global dedup across tasks and sources, in this order: exact text, URL, MinHash, substring.

    Each stage keeps one copy per group (the longest text; on a tie the source listed first,
    then the smallest id) and writes what it removes to `output_dir/excluded/<stage>/`.

    Attributes:
        exact: drop documents whose normalized text (NFKC, lower case, collapsed spaces)
            another document has.
        url: drop documents whose normalized `metadata["url"]` another document has
            (see `llm_data.urls.normalize_url`); documents without a URL are kept.
        minhash: drop near-duplicates: word n-gram MinHash with LSH (datatrove's 4 stages).
        ngram: MinHash shingle size in words.
        bands: LSH bands (datatrove's `num_buckets`); more bands catch lower similarities.
        rows: hashes per band (datatrove's `hashes_per_bucket`); more rows need higher
            similarity. A pair of Jaccard similarity s shares a band with probability
            1 - (1 - s**rows) ** bands.
        seed: MinHash permutation seed.
        partitions: tasks of the exact/URL/substring duplicate-finding stage (each holds its
            share of the keys in memory).
        substring: cut repeated spans of whole sentences (`llm_data.substring`): a run of
            consecutive sentences, each of which another document also has, of at least
            `substring_min_words` words is cut from every copy but the kept one; the
            documents are kept.
        substring_min_words: shortest span cut, in words (Lee et al. 2021: 50 tokens).
        substring_min_doc_words: a document left with fewer words after its cuts is dropped
            (reason `substring_too_short`); an emptied one always is.
    """

    exact: bool = True
    url: bool = True
    minhash: bool = True
    substring: bool = False
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    partitions: int = 1
    substring_min_words: int = 50
    substring_min_doc_words: int = 10

    def __post_init__(self) -> None:
        for name in ("ngram", "bands", "rows", "partitions", "substring_min_words"):
            if getattr(self, name) < 1:
                _fail(f"dedup.{name}", getattr(self, name), "an integer >= 1")
        if self.substring_min_doc_words < 0:
            _fail("dedup.substring_min_doc_words", self.substring_min_doc_words, "an integer >= 0")
        if self.bands * self.rows > 1024:
            _fail("dedup.bands", self.bands, "bands x rows <= 1024 hashes per document")


@dataclass(kw_only=True)
class SlurmConfig:
    """datatrove's SlurmPipelineExecutor settings (used with `executor: slurm`).

    Attributes:
        partition: Slurm partition of every job.
        time: time limit per job (`sbatch --time`).
        cpus_per_task: CPUs per datatrove task.
        mem_per_cpu_gb: memory per CPU in GB.
        logs_dir: folder for Slurm's stdout/stderr (default: `logs/<stage>/slurm_logs`).
        job_name: prefix of the job names (`<job_name>-<stage>`).
        env_command: shell line run before each task, e.g. `source .venv/bin/activate`.
        sbatch_args: extra `#SBATCH --key=value` lines, e.g. `{account: myproject}`.
    """

    partition: str = ""
    time: str = "24:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    logs_dir: str = ""
    job_name: str = "curation"
    env_command: str = ""
    sbatch_args: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", self.time):
            _fail("slurm.time", self.time, "Slurm's D-HH:MM:SS, HH:MM:SS or MM")
        if self.cpus_per_task < 1:
            _fail("slurm.cpus_per_task", self.cpus_per_task, "an integer >= 1")
        if self.mem_per_cpu_gb < 1:
            _fail("slurm.mem_per_cpu_gb", self.mem_per_cpu_gb, "an integer >= 1")
        self.sbatch_args = {str(k): str(v) for k, v in dict(self.sbatch_args).items()}


@dataclass(kw_only=True)
class RayConfig:
    """datatrove's RayPipelineExecutor settings (used with `executor: ray`, extra `[ray]`).

    Attributes:
        address: Ray cluster to join; empty starts a local Ray on this machine.
        num_cpus: CPUs of that local Ray (0: all of them).
        cpus_per_task: CPUs reserved per datatrove task.
        mem_per_cpu_gb: memory reserved per CPU in GB.
    """

    address: str = ""
    num_cpus: int = 0
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 1.0

    def __post_init__(self) -> None:
        if self.num_cpus < 0:
            _fail("ray.num_cpus", self.num_cpus, "an integer >= 0")
        if self.cpus_per_task < 1:
            _fail("ray.cpus_per_task", self.cpus_per_task, "an integer >= 1")
        if self.mem_per_cpu_gb <= 0:
            _fail("ray.mem_per_cpu_gb", self.mem_per_cpu_gb, "a number > 0")


# CurationConfig fields that say how curation runs, not what it keeps: the curated documents are
# the same for any value of these, so neither a resumable work folder (`curation._fingerprint`) nor
# a pipeline's stage record (apps/pretrain) may depend on them. `tasks` is not one: it splits files.
RUNTIME_FIELDS = frozenset({"workers", "overwrite", "executor", "skip_completed", "slurm", "ray"})


@dataclass(kw_only=True)
class CurationConfig:
    """A curation run: sources in, curated JSONL (datatrove Documents) out, one folder per source.

    Attributes:
        sources: the inputs; names must be unique.
        output_dir: final output folder (written atomically: built beside it, then renamed).
        languages: language codes kept by the language-ID filter; empty keeps every language.
        min_language_score: minimum py3langid probability of the top language.
        gopher: Gopher quality rules (only on sources with quality_filters=True).
        gopher_repetition: Gopher's repetition rules (only on sources with
            quality_filters=True; off by default).
        c4: C4 quality rules (only on sources with quality_filters=True; off by default).
        fineweb: FineWeb quality rules (only on sources with quality_filters=True; off by
            default).
        classifier: a trained quality classifier (sources with quality_filters=True; off by
            default).
        pii: e-mail / IP / phone masking (every source).
        dedup: global exact, URL and MinHash dedup across tasks and sources.
        decontamination: drop documents containing eval items (every source; off by default).
        tasks: datatrove tasks per source (files are split between tasks), and of the
            dedup stages that read documents.
        workers: processes running tasks at once (local and Ray executors).
        overwrite: replace an existing output_dir instead of failing.
        executor: "local" (processes on this machine), "slurm" (submit job arrays with
            `sbatch` and return) or "ray" (extra `[ray]`).
        skip_completed: keep the work folder (`.<output_dir>.partial` beside it) of a failed
            or killed run and skip the tasks it completed when run again with the same config.
        slurm: Slurm job settings (`executor: slurm`).
        ray: Ray settings (`executor: ray`).
    """

    sources: list[SourceConfig] = field(default_factory=list)
    output_dir: str = "curated"
    languages: tuple[str, ...] = SUPPORTED_LANGUAGES
    min_language_score: float = 0.5
    gopher: GopherConfig = field(default_factory=GopherConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    c4: C4Config = field(default_factory=C4Config)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    tasks: int = 1
    workers: int = 1
    overwrite: bool = False
    executor: Literal["local", "slurm", "ray"] = "local"
    skip_completed: bool = True
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not self.sources:
            _fail("sources", self.sources, "at least one SourceConfig")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            _fail("sources", names, "unique source names")
        if not self.output_dir:
            _fail("output_dir", self.output_dir, "a non-empty path")
        self.languages = tuple(self.languages)
        for lang in self.languages:
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                _fail("languages", lang, "ISO 639-1 codes such as 'en', 'de'")
        if not 0.0 <= self.min_language_score <= 1.0:
            _fail("min_language_score", self.min_language_score, "a probability in [0, 1]")
        if self.tasks < 1:
            _fail("tasks", self.tasks, "an integer >= 1")
        if self.workers < 1:
            _fail("workers", self.workers, "an integer >= 1")
        if self.executor not in ("local", "slurm", "ray"):
            _fail("executor", self.executor, "'local', 'slurm' or 'ray'")
        if self.executor == "slurm" and not self.slurm.partition:
            _fail("slurm.partition", self.slurm.partition, "a partition name with executor=slurm")


@dataclass(kw_only=True)
class ShardConfig:
    """Keyword arguments of `tokenize_to_shards`: `tokenize_to_shards(a, b, c, **asdict(cfg))`.

    Attributes:
        seq_len: model context; each sample holds `seq_len + 1` tokens.
        heldout_fraction: share of documents (by id hash) kept out for bits-per-byte eval.
        seed: changes which documents are held out.
        overwrite: replace an existing output folder.
        tasks: datatrove tasks, contiguous shares of the curated files (same output for any).
        workers: tasks running at once.
    """

    seq_len: int = 1024
    heldout_fraction: float = 0.01
    seed: int = 0
    overwrite: bool = False
    tasks: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            _fail("seq_len", self.seq_len, "an integer >= 1")
        if not 0.0 <= self.heldout_fraction < 1.0:
            _fail("heldout_fraction", self.heldout_fraction, "a fraction in [0, 1)")
        for name in ("tasks", "workers"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "an integer >= 1")
