"""Task specs in a suite: cloze, MC letters, few-shot generate-until; YAML task files; the
headline score, the macro average and the best of formulations in results.json."""

import json
import math
from pathlib import Path

import pytest

from llm_eval import run_suite
from llm_eval.answers import ANSWER_METRICS
from llm_eval.generation import generate
from llm_eval.prompts import answer_prompt
from llm_eval.task_spec import TaskSpec, load_task_specs, spec_items

SAMPLE = Path(__file__).parents[3] / "data" / "sample"
SCIQ = str(SAMPLE / "eval" / "sciq.jsonl.gz")
LAMBADA = str(SAMPLE / "eval" / "lambada.jsonl.gz")


def test_suite_runs_every_kind_and_aggregates(tmp_path, byte_tok, models):
    model = models.TinyAttention()
    gen = TaskSpec(path=SCIQ, kind="generate", num_fewshot=2, max_tokens=4, stop=("\n", "."))
    specs = [SCIQ, TaskSpec(path=SCIQ, kind="mc_letter"), gen,
             TaskSpec(path=LAMBADA, kind="generate", max_tokens=3)]  # fmt: skip
    results = run_suite(
        model, byte_tok, specs, max_seq_len=512, limit=4, output_dir=tmp_path, progress=False
    )
    assert list(results) == ["sciq", "sciq_mc", "sciq_gen_2shot", "lambada_gen"]
    assert results["sciq"]["score"] == results["sciq"]["acc_norm"]
    assert results["sciq_mc"]["score"] == results["sciq_mc"]["acc"]
    assert results["sciq_gen_2shot"]["score"] == results["sciq_gen_2shot"]["exact_match"]
    summary = json.loads((tmp_path / "results.json").read_text())
    agg = summary["aggregate"]
    scores = [m["score"] for m in results.values()]
    assert agg["macro_avg"] == pytest.approx(sum(scores) / 4) and agg["tasks"] == 4
    ses = [m["score_stderr"] for m in results.values()]
    assert agg["macro_avg_stderr"] == pytest.approx(math.sqrt(sum(s * s for s in ses)) / 4)
    best = max(("sciq", "sciq_mc"), key=lambda t: results[t]["score"])
    assert agg["best_of_formulations"] == {"sciq": {"score": results[best]["score"], "task": best}}
    # per-item records: the engine's text for the few-shot prompt, scored by the answer metrics
    records = [json.loads(line) for line in (tmp_path / "sciq_gen_2shot.jsonl").open()]
    base, name, items = spec_items(gen, limit=4)
    assert (base, name) == ("sciq", "sciq_gen_2shot") and all(i.task == name for i in items)
    prompts = [[256, *p] for p in byte_tok.encode_batch([i.contexts[i.gold] for i in items])]
    expected = generate(model, byte_tok, prompts, stop=gen.stop, max_tokens=4, max_seq_len=512)
    for record, item, prompt, out in zip(records, items, prompts, expected, strict=True):
        assert record["generation"] == out.text and record["answers"] == [
            item.choices[item.gold].strip()
        ]
        assert record["prompt_tokens"] == len(prompt)
        for name, fn in ANSWER_METRICS.items():
            assert record["correct"][name] == fn(out.text, record["answers"])


def test_yaml_task_file(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "items.jsonl").write_text(
        json.dumps({"task": "mine", "id": 0, "contexts": ["Q: 1+1?\nA:"], "choices": [" 2"],
                    "gold": ["2", "two"]}) + "\n"
    )  # fmt: skip
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text(
        'tasks:\n  - path: items.jsonl\n    kind: generate\n    stop: ["\\n"]\n'
        "    max_tokens: 5\n    metric: f1\n  - {path: items.jsonl, name: mine_ll}\n"
    )
    first, second = load_task_specs(spec_file)
    assert first.path == str(tmp_path / "items.jsonl") and first.metric == "f1"
    assert first.stop == ("\n",) and second.name == "mine_ll" and second.kind == "loglikelihood"
    spec_file.write_text("path: items.jsonl\nstops: ['x']\n")
    with pytest.raises(ValueError, match=r"mine.yaml: task 0: unknown keys \['stops'\]"):
        load_task_specs(spec_file)
    spec_file.write_text("path: items.jsonl\nkind: chat\n")
    with pytest.raises(ValueError, match="mine.yaml: task 0: TaskSpec.kind"):
        load_task_specs(spec_file)


def test_sample_boolq_is_asked_yes_or_no():
    """The sample run's boolq_gen: each passage's question, answered "yes" or "no" (the gold
    choice's text) by generation; a generated " Yes." is a hit, "yes, no" is not."""
    pytest.importorskip("yaml")
    specs = load_task_specs(SAMPLE / "tasks" / "generative.yaml")
    (spec,) = [s for s in specs if s.path.endswith("boolq.jsonl.gz")]
    _, name, items = spec_items(spec, limit=20)
    asked = [answer_prompt(item) for item in items]
    assert name == "boolq_gen" and {a for _, a in asked} == {("yes",), ("no",)}
    assert all(prompt.endswith("?\nAnswer:") for prompt, _ in asked)
    assert ANSWER_METRICS["exact_match"](" Yes", ["yes"]) == 1
    assert ANSWER_METRICS["exact_match"]("yes, no", ["yes"]) == 0
