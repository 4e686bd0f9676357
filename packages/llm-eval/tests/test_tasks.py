import gzip
import json
from pathlib import Path

import pytest

from llm_eval import load_tasks

SAMPLE_EVAL = Path(__file__).parents[3] / "data" / "sample" / "eval"
TASKS = ("arc_easy", "boolq", "hellaswag", "lambada", "piqa", "sciq")
GOOD = {"task": "t", "id": 0, "contexts": ["a", "a"], "choices": [" b", " c"], "gold": 1}


@pytest.mark.parametrize("task", TASKS)
def test_shipped_slices_load(task):
    items = load_tasks(SAMPLE_EVAL / f"{task}.jsonl.gz")
    assert len(items) == 200
    assert {item.task for item in items} == {task}
    assert len({item.id for item in items}) == 200
    for item in items:
        assert len(item.contexts) == len(item.choices) >= 1
        if task == "lambada":
            assert item.is_generation and item.gold == (item.choices[0].strip(),)
        else:
            assert not item.is_generation and 0 <= item.gold < len(item.choices)


def write(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    data = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(data)
    else:
        path.write_text(data)
    return path


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_plain_and_gzip_with_blank_lines(tmp_path, name):
    items = load_tasks(write(tmp_path / name, [GOOD, "", {**GOOD, "id": "x", "gold": 0}]))
    assert [(i.id, i.gold) for i in items] == [(0, 1), ("x", 0)]
    assert items[0].choices == (" b", " c")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{oops", "invalid JSON"),
        ([1], "expected a JSON object"),
        ({k: v for k, v in GOOD.items() if k != "choices"}, "missing field 'choices'"),
        ({**GOOD, "gold": 2}, "field 'gold' must be an index in \\[0, 2\\)"),
        ({**GOOD, "gold": True}, "field 'gold'"),
        ({**GOOD, "gold": ["b"]}, "field 'gold' is a list of answers"),
        ({**GOOD, "choices": [" b"]}, "'contexts' has 2 entries, 'choices' 1"),
        ({**GOOD, "contexts": ["a", 3]}, "field 'contexts' must be a non-empty list of strings"),
        ({**GOOD, "task": ""}, "field 'task'"),
        ({**GOOD, "id": None}, "field 'id'"),
    ],
)
def test_malformed_records_name_file_line_and_field(tmp_path, bad, message):
    path = write(tmp_path / "bad.jsonl", [GOOD, bad])
    with pytest.raises(ValueError, match=message) as err:
        load_tasks(path)
    assert f"{path}:2:" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_tasks(tmp_path / "nope.jsonl")


def test_package_imports_no_sibling_or_tokenizers():
    import subprocess
    import sys

    code = (
        "import sys, llm_eval; bad = [m for m in ('llm_model', 'llm_tokenize', 'tokenizers') "
        "if m in sys.modules]; sys.exit(bool(bad))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
