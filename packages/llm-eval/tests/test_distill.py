"""Distilled suites on simulated models with known abilities, and the CLI end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

from llm_eval import load_tasks
from llm_eval.cli import main
from llm_eval.distill import (
    ModelResults,
    distill,
    evaluate_subsets,
    match_items,
    read_results,
    select_items,
)
from llm_formats.eval_results import write_jsonl_records as write_jsonl

pytest.importorskip("scipy", reason="scipy (the [distill] extra) is not installed")
SAMPLE_EVAL = Path(__file__).parents[3] / "data" / "sample" / "eval"


def simulate(tmp_path: Path, n_models: int, seed: int) -> list[Path]:
    """Results dirs of models with abilities spread over [-2, 2] on two tasks of 200 items whose
    hits follow a 2-parameter logistic (IRT) model; a quarter of the items are pure noise."""
    rng = np.random.default_rng(seed)
    items = np.random.default_rng(99)  # the same items for every call
    difficulty = items.normal(0, 1, (2, 200))
    discrimination = np.where(items.random((2, 200)) < 0.25, 0.0, items.uniform(0.5, 2, (2, 200)))
    dirs = []
    for m, ability in enumerate(np.linspace(-2, 2, n_models) + rng.normal(0, 0.05, n_models)):
        out = tmp_path / f"seed{seed}-model{m}"
        tasks = {}
        for t, task in enumerate(("arc_easy", "piqa")):
            p = 1 / (1 + np.exp(-discrimination[t] * (ability - difficulty[t])))
            hits = (rng.random(200) < p).astype(int)
            write_jsonl(out / f"{task}.jsonl", [
                {"task": task, "id": i, "correct": {"acc": int(h)}} for i, h in enumerate(hits)
            ])  # fmt: skip
            tasks[task] = {"acc": float(hits.mean())}
        (out / "results.json").write_text(json.dumps({"tasks": tasks, "metadata": {}}))
        dirs.append(out)
    return dirs


def test_select_items_takes_discriminating_items_per_difficulty_stratum():
    # 4 models x 4 items: items 0, 1 are easy, 2, 3 hard; 0 and 2 rise with the models' totals,
    # 1 and 3 score the same for every model (they cannot rank anything)
    matrix = np.array(
        [[0.6, 0.75, 0.0, 0.15],
         [0.7, 0.75, 0.1, 0.15],
         [0.8, 0.75, 0.2, 0.15],
         [0.9, 0.75, 0.3, 0.15]],
    )  # fmt: skip
    assert select_items(matrix, size=2, strata=2).tolist() == [0, 2]
    assert select_items(matrix, size=2, strata=1).tolist() == [0, 2]
    assert select_items(matrix, size=4, strata=2).tolist() == [0, 1, 2, 3]


def test_distilled_subset_ranks_heldout_models_better_than_random(tmp_path):
    select = [read_results(d, "acc") for d in simulate(tmp_path, 12, seed=1)]
    heldout = [read_results(d, "acc") for d in simulate(tmp_path, 10, seed=2)]
    rows = evaluate_subsets(select, heldout, [0.1, 0.5], random_draws=20)
    assert [r["items"] for r in rows] == [40, 200] and rows[0]["of"] == 400
    assert rows[0]["kendall_tau"] > rows[0]["random_kendall_tau"]
    assert rows[1]["kendall_tau"] >= 0.8


def test_cli_run_distill_report(tmp_path, monkeypatch, byte_tok, models):
    """`llm-eval run` with a model given by import path, then `distill` and `report`."""
    (tmp_path / "toy_loader.py").write_text(
        "import torch\n"
        "from llm_eval.adapters import LoadedModel\n"
        "class Tok:\n"
        "    eos_id, vocab_size = 256, 257\n"
        "    def encode_batch(self, texts): return [list(t.encode()) for t in texts]\n"
        "    def decode(self, ids): return bytes(ids).decode()\n"
        "class Model(torch.nn.Module):\n"
        "    def __init__(self, scale):\n"
        "        super().__init__()\n"
        "        g = torch.Generator().manual_seed(int(scale))\n"
        "        self.emb = torch.nn.Embedding(257, 257)\n"
        "        self.emb.weight.data = torch.randn(257, 257, generator=g) * scale\n"
        "    def forward(self, input_ids): return self.emb(input_ids)\n"
        "def load(arg, device='cpu'):\n"
        "    return LoadedModel(Model(float(arg)), Tok(), 4096,\n"
        "                       {'model': f'toy{arg}', 'tokenizer': 'bytes', 'step': int(arg)})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tasks = [str(SAMPLE_EVAL / "arc_easy.jsonl.gz"), str(SAMPLE_EVAL / "lambada.jsonl.gz")]
    dirs = []
    for scale in (1, 2, 3, 4):
        out = tmp_path / f"r{scale}"
        args = ["run", "--model", "toy_loader:load", "--model-arg", str(scale), "--tasks", *tasks]
        assert main([*args, "--output", str(out), "--limit", "20", "--batch-size", "8"]) == 0
        dirs.append(str(out))
    summary = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert summary["metadata"]["model"] == "toy1" and summary["tasks"]["arc_easy"]["n"] == 20
    dist = tmp_path / "distilled"
    args = ["distill", "--select", *dirs[:2], "--heldout", *dirs[1:], "--tasks", *tasks]
    args += ["--output", str(dist), "--keep", "0.25", "--fractions", "0.5", "--method", "strata"]
    assert main(args) == 0
    arc = load_tasks(dist / "arc_easy_distilled.jsonl")
    assert len(arc) == 5 and arc[0].task == "arc_easy_distilled"
    assert "Kendall tau" in (dist / "distill.md").read_text()
    table = tmp_path / "table.md"
    assert main(["report", *dirs, "--output", str(table)]) == 0
    assert table.read_text().count("| toy") == 4
    try:
        import matplotlib  # noqa: F401  (the [plots] extra)
    except ImportError:
        pass
    else:
        plot = tmp_path / "acc.png"
        assert main(["report", *dirs, "--plot", str(plot)]) == 0
        assert plot.stat().st_size > 1000
    assert main(["run", "--model", "nope", "--tasks", *tasks, "--output", "x"]) == 1


def test_match_items_keeps_the_differences_between_models():
    # models A, B over 4 items: the full means differ by 0.125 (0.5 vs 0.375); item 2 (no
    # difference) alone is closest, then item 3 (difference 0.5) makes the pair's exactly 0.125
    matrix = np.array([[1.0, 0.0, 0.5, 0.5], [0.0, 1.0, 0.5, 0.0]])
    assert match_items(matrix, 1).tolist() == [2]
    assert match_items(matrix, 2).tolist() == [2, 3]
    assert match_items(matrix, 9).tolist() == [0, 1, 2, 3]
    # item 0 sits at the task's mean level for every model but ranks nothing; items 1 and 2
    # rank the models as the full mean does (A < B < C), one level above it, one below
    matrix = np.array([[0.0, 1.0, -3.0], [0.0, 2.0, -2.0], [0.0, 3.0, -1.0]])
    assert match_items(matrix, 1).tolist() == [1]
    # greedy takes item 0 (differences closest to the full set's), then item 2; the exchange
    # pass swaps item 0 for item 1, and the pair 1 + 2 is off by 0.017 per model, not 0.24
    matrix = np.array([[0.05, 0.5, -0.5], [-0.05, -0.5, 0.5]])
    assert match_items(matrix, 2, passes=0).tolist() == [0, 2]
    assert match_items(matrix, 2).tolist() == [1, 2]


def two_skill_models(n_models: int, seed: int) -> list[ModelResults]:
    """Models with two independent skills on one task of 300 items: 70 % of the items measure
    skill 0, the rest skill 1; a model's item score is continuous (like a log-prob per byte)."""
    rng = np.random.default_rng(seed)
    items = np.random.default_rng(7)  # the same items for every call
    skill_of_item = (items.random(300) >= 0.7).astype(int)
    difficulty = items.normal(0, 1, 300)
    models = []
    for m in range(n_models):
        skills = rng.normal(0, 1, 2)
        scores = skills[skill_of_item] - difficulty + rng.normal(0, 0.1, 300)
        models.append(ModelResults(f"m{m}", {"t": dict(enumerate(scores.tolist()))}, {}))
    return models


def test_match_represents_every_skill_where_discrimination_follows_the_main_one():
    # discrimination against the full mean favours skill-0 items (the full mean is mostly
    # skill 0), so `strata` ranks by skill 0 alone; `match` keeps both in their proportion
    select, heldout = two_skill_models(12, seed=1), two_skill_models(12, seed=2)
    match = evaluate_subsets(select, heldout, [0.05], method="match", random_draws=20)[0]
    strata = evaluate_subsets(select, heldout, [0.05], method="strata", random_draws=0)[0]
    assert match["items"] == strata["items"] == 15 and match["method"] == "match"
    assert match["kendall_tau"] >= 0.9 > strata["kendall_tau"]
    assert match["kendall_tau"] > match["random_kendall_tau"]
    with pytest.raises(ValueError, match="method: got 'irt'"):
        distill(select, 0.1, method="irt")
