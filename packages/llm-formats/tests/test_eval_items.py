import json

import pytest

from llm_formats.eval_items import EvalItem, read_items
from llm_formats.jsonl import FormatError

MC = {"task": "t", "id": 0, "contexts": ["Q: a?", "Q: a?"], "choices": [" b", " c"], "gold": 1}
GEN = {"task": "lambada", "id": 1, "contexts": ["the warm"], "choices": [" mat"],
       "gold": ["mat", "rug"]}  # fmt: skip


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_gold_text_is_the_scored_context_and_continuation(tmp_path):
    mc, gen = read_items(write(tmp_path / "t.jsonl", [MC, "", GEN]))
    assert mc.gold_text == "Q: a? c" and mc.gold_index == 1 and not mc.is_generation
    # a generation item scores its target continuation, not the accepted answers joined
    assert gen.gold_text == "the warm mat" and gen.gold == ("mat", "rug") and gen.is_generation


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{oops", "invalid JSON"),
        ({**MC, "gold": True}, "field 'gold'"),
        ({**MC, "gold": 2}, r"field 'gold' must be an index in \[0, 2\)"),
        ({**GEN, "choices": [" a", " b"], "contexts": ["x", "y"]}, "list of answers"),
        ({k: v for k, v in MC.items() if k != "id"}, "missing field 'id'"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, bad, message):
    path = write(tmp_path / "bad.jsonl", [MC, bad])
    with pytest.raises(FormatError, match=message) as err:
        read_items(path)
    assert f"{path}:2:" in str(err.value)


def test_item_is_a_value():
    assert EvalItem("t", 0, ("a",), ("b",), 0) == EvalItem("t", 0, ("a",), ("b",), 0)
