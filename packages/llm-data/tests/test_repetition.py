"""Gopher's repetition rules per language: planted repetitions are dropped with their reason."""

from __future__ import annotations

import random

import pytest
from datatrove.data import Document

from llm_data.config import CurationConfig, GopherRepetitionConfig, SourceConfig
from llm_data.filters import quality_steps
from llm_data.quality import MultilingualGopherRepetitionFilter

# Ordinary prose: no line, paragraph or long n-gram repeats (short ones do, as in real text).
PROSE = [
    "The administrator installs the package on the server before the upgrade starts.",
    "Then the service is restarted with the new configuration and a fresh cache.",
    "Logs are checked to see that nothing failed while the machine was rebooting.",
    "A backup of every database is copied to another disk each night at two.",
    "Users who cannot log in afterwards should write to the help desk at once.",
    "Firewall rules are reviewed twice a year by someone outside the team.",
]


def _doc(text: str, language: str = "en") -> Document:
    return Document(text=text, id="d", metadata={"language": language})


def _shuffled_words(seed: int, n: int) -> str:
    words = " ".join(PROSE).split()
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(n))


@pytest.fixture(scope="module")
def repetition():
    return MultilingualGopherRepetitionFilter(GopherRepetitionConfig(enabled=True), ("en", "zh"))


def test_normal_text_is_kept(repetition):
    assert repetition.filter(_doc("\n".join(PROSE))) is True
    assert repetition.filter(_doc("\n\n".join(PROSE))) is True


@pytest.mark.parametrize(
    "text, reason",
    [
        # 3 of 6 paragraphs repeat the first: paragraph share 0.5 > 0.3
        ("\n\n".join([PROSE[0]] * 3 + PROSE[1:4]), "dup_para_frac"),
        # 1 repeated paragraph of 7, but a long one: 0.14 of paragraphs, ~0.35 of characters
        ("\n\n".join([PROSE[0] * 4] * 2 + PROSE[1:6]), "dup_para_char_frac"),
        # lines, not paragraphs: 3 of 6 lines repeat (no blank lines, so one paragraph)
        ("\n".join([PROSE[1]] * 3 + PROSE[2:5]), "dup_line_frac"),
        ("\n".join([PROSE[0] * 4] * 2 + PROSE[1:6]), "dup_line_char_frac"),
        # one line, a 2-gram over and over between other words
        (" ".join(f"{w} click here" for w in PROSE[0].split() * 2), "top_2_gram"),
        # one line of six sentences, the first two said again: duplicated 5-grams
        (" ".join(PROSE + PROSE[:2]), "duplicated_5_n_grams"),
    ],
)
def test_planted_repetition_is_dropped_with_its_reason(repetition, text, reason):
    assert repetition.filter(_doc(text)) == (False, f"gopher_repetition_{reason}")


def test_thresholds_come_from_config(repetition):
    text = "\n".join([PROSE[1]] * 3 + PROSE[2:5])
    lenient = GopherRepetitionConfig(
        enabled=True, dup_line_frac=0.6, dup_line_char_frac=0.6, dup_ngram_char_frac={}
    )
    assert MultilingualGopherRepetitionFilter(lenient, ("en",)).filter(_doc(text)) is True
    with pytest.raises(ValueError, match=r"gopher_repetition.top_ngram_char_frac\[2\]"):
        GopherRepetitionConfig(top_ngram_char_frac={2: 1.5})


def test_chinese_words_come_from_its_own_tokenizer(repetition):
    # datatrove's own table gives zh spaCy's `xx`, which sees one "word" per clause.
    clause = "我们在服务器上安装软件包然后重新启动服务"
    text = "，".join([clause] * 4) + "。"
    keep, reason = repetition.filter(_doc(text, "zh"))  # one line: only word n-gram rules
    assert not keep and reason.startswith("gopher_repetition_top_")
    prose = (
        "管理员在升级之前先在服务器上安装软件包。然后用新的配置重新启动服务。"
        "接着检查日志，确认重启期间没有出现错误。每天晚上两点，所有数据库的备份都会复制到另一块磁盘。"
        "升级以后无法登录的用户应当立刻写信给帮助台。防火墙规则每年由团队以外的人审查两次。"
    )
    assert repetition.filter(_doc(prose, "zh")) is True


def test_random_word_salad_is_kept(repetition):
    # Random words repeat short n-grams by chance, but not enough for any rule.
    assert repetition.filter(_doc(_shuffled_words(0, 120))) is True


def test_step_sits_after_gopher_when_enabled():
    source = SourceConfig(name="web", path="x", format="jsonl")
    config = CurationConfig(sources=[source], gopher_repetition=GopherRepetitionConfig())
    names = [type(s).__name__ for s in quality_steps(source, config)]
    assert "MultilingualGopherRepetitionFilter" not in names  # off by default
    config.gopher_repetition.enabled = True
    names = [type(s).__name__ for s in quality_steps(source, config)]
    assert names[1:3] == ["MultilingualGopherFilter", "MultilingualGopherRepetitionFilter"]


def test_curation_counts_and_lists_what_it_removes(tmp_path):
    import gzip
    import json

    from llm_data import DedupConfig, run_curation
    from llm_data.config import PIIConfig

    repeated = "\n".join(PROSE + PROSE[:4])  # 4 of 10 lines repeat an earlier one
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "docs.jsonl").write_text(
        json.dumps({"id": "normal", "text": "\n".join(PROSE)})
        + "\n"
        + json.dumps({"id": "repeated", "text": repeated})
        + "\n"
    )
    config = CurationConfig(
        sources=[SourceConfig(name="s", path=str(tmp_path / "in"), format="jsonl")],
        output_dir=str(tmp_path / "out"),
        languages=("en",),
        gopher_repetition=GopherRepetitionConfig(enabled=True),
        pii=PIIConfig(enabled=False),
        dedup=DedupConfig(exact=False, url=False, minhash=False),
    )
    stats = run_curation(config)
    rows = {row["stage"]: row for row in stats["s"]["stages"]}
    assert rows["MultilingualGopherFilter"]["removed"] == 0  # both pass Gopher quality
    row = rows["MultilingualGopherRepetitionFilter"]
    assert (row["in"], row["kept"]) == (2, 1)
    assert row["removed_by"] == {"gopher_repetition_dup_line_frac": 1}
    (excluded,) = (tmp_path / "out" / "excluded" / "gopher_repetition" / "s").glob("*.jsonl.gz")
    with gzip.open(excluded, "rt") as f:
        (record,) = [json.loads(line) for line in f]
    assert record["id"] == "repeated"
    assert record["metadata"]["filter_reason"] == "gopher_repetition_dup_line_frac"
