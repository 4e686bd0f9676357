"""The generation engine: KV-cache greedy decoding equals a no-cache reference, per-row stop
strings and max tokens, finished rows leaving the batch, seeded sampling."""

from pathlib import Path

import pytest
import torch
from torch import nn

from llm_eval.adapters import LoadedModel
from llm_eval.generation import Sampling, generate, generate_until


class TinyCache:
    """Keys/values (B, L, d) of the one attention layer, preallocated, with validity."""

    def __init__(self, batch: int, max_len: int, dim: int) -> None:
        self.k = torch.zeros(batch, max_len, dim)
        self.v = torch.zeros(batch, max_len, dim)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool)
        self.length = 0
        self.selected = []  # batch sizes after each select: shows rows leaving

    def select(self, rows):
        self.k, self.v, self.valid = self.k[rows], self.v[rows], self.valid[rows]
        self.selected.append(len(rows))


class TinyCachedAttention(nn.Module):
    """conftest's TinyAttention (one causal layer, learned positions) with llm_model.Transformer's
    generation seam: ``new_kv_cache`` and ``hidden_states(ids, positions=, key_mask=, cache=)``."""

    def __init__(self, vocab_size: int = 257, dim: int = 16, max_len: int = 512) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.pos = nn.Embedding(vocab_size, dim), nn.Embedding(max_len, dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, vocab_size)

    def forward(self, input_ids):
        return self.logits(self.hidden_states(input_ids))

    def logits(self, h):
        return self.out(h)

    def new_kv_cache(self, batch, max_len):
        self.caches = [
            *getattr(self, "caches", []),
            TinyCache(batch, max_len, self.emb.embedding_dim),
        ]
        return self.caches[-1]

    def hidden_states(self, input_ids, positions=None, attn_mask=None, key_mask=None, cache=None):
        if cache is None:  # the whole sequence, plain causal
            cache = TinyCache(input_ids.shape[0], input_ids.shape[1], self.emb.embedding_dim)
            positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
            key_mask = torch.ones_like(input_ids, dtype=torch.bool)
        T, s = input_ids.shape[1], cache.length
        x = self.emb(input_ids) + self.pos(positions)
        q, k, v = self.qkv(x).chunk(3, -1)
        cache.k[:, s : s + T], cache.v[:, s : s + T], cache.valid[:, s : s + T] = k, v, key_mask
        cache.length = s + T
        causal = torch.ones(T, s + T, dtype=torch.bool).tril(s)
        itself = torch.arange(s + T)[None] == (s + torch.arange(T))[:, None]  # no empty rows
        mask = (causal & cache.valid[:, None, : s + T]) | itself
        keys, values = cache.k[:, : s + T], cache.v[:, : s + T]
        return x + nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def reference_greedy(model, prompt: list[int], n: int, eos: int) -> list[int]:
    """No cache, no padding, no batch: the whole sequence through ``model`` every step."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
            out.append(nxt)
            ids.append(nxt)
            if nxt == eos:
                break
    return out


PROMPTS = ["The cat", "A much longer prompt than the others", "x", "Hello, world! How are"]


@pytest.mark.parametrize("cached", [True, False])
def test_greedy_batched_equals_the_no_cache_reference(cached, models, byte_tok):
    """Left-padded, batched (3 per batch, rows of different lengths), cached or recomputed:
    each row generates what it generates alone with no cache."""
    tok = byte_tok
    model = (TinyCachedAttention() if cached else models.CausalMean()).eval()
    prompts = [[tok.eos_id, *p] for p in tok.encode_batch(PROMPTS)]
    max_tokens = [8, 5, 9, 12]
    out = generate(model, tok, prompts, max_tokens=max_tokens, max_seq_len=128, batch_size=3)
    for prompt, n, gen in zip(prompts, max_tokens, out, strict=True):
        assert gen.tokens == reference_greedy(model, prompt, n, tok.eos_id)
        assert gen.finish in ("length", "eos")
    if cached:  # longest first: the first batch (5, 12 and 8 tokens) shrank as rows finished
        assert [c.selected for c in model.caches] == [[2, 1], []]


def test_stop_strings_per_row_across_token_boundaries(byte_tok):
    """Byte tokens: a stop string of several bytes spans several tokens; each row has its
    own stops and max tokens; the text is cut before the stop, the tokens are what ran."""
    tok, model = byte_tok, TinyCachedAttention().eval()
    prompts = [[tok.eos_id, *p] for p in tok.encode_batch(["ab", "cd"])]
    free = generate(model, tok, prompts, max_tokens=[20, 20], max_seq_len=64)
    texts = [tok.decode(g.tokens) for g in free]
    stop0 = texts[0][3:6]  # three bytes from the middle of row 0's free-running text
    out = generate(model, tok, prompts, stop=[(stop0,), ()], max_tokens=[20, 7], max_seq_len=64)
    first = texts[0].index(stop0)
    assert out[0].finish == "stop" and out[0].text == texts[0][:first]
    assert len(out[0].tokens) == first + len(stop0)  # stopped at the token that completed it
    assert out[1].finish == "length" and out[1].tokens == free[1].tokens[:7]


def test_eos_ends_a_row_and_is_not_in_the_text(byte_tok):
    class EosAfterTwo(nn.Module):  # predicts 'z' twice, then EOS
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, ids):
            logits = torch.zeros(*ids.shape, 257)
            z = (ids == ord("z")).cumsum(-1)
            logits[..., ord("z")] = (z < 2).float()
            logits[..., 256] = (z >= 2).float()
            return logits

    tok = byte_tok
    (gen,) = generate(EosAfterTwo(), tok, [[256, 97]], max_tokens=[10], max_seq_len=32)
    assert gen.finish == "eos" and gen.text == "zz" and gen.tokens == [122, 122, 256]


def test_generate_until_takes_a_loaded_model_and_text(byte_tok):
    tok, model = byte_tok, TinyCachedAttention().eval()
    loaded = LoadedModel(model=model, tokenizer=tok, max_seq_len=64)
    texts = generate_until(loaded, PROMPTS, stop=["\n"], max_tokens=6)
    ids = [[tok.eos_id, *p] for p in tok.encode_batch(PROMPTS)]
    expected = [tok.decode(reference_greedy(model, p, 6, 256)).split("\n")[0] for p in ids]
    assert texts == expected


def test_long_prompts_keep_their_last_tokens(byte_tok):
    tok, model = byte_tok, TinyCachedAttention().eval()
    prompt = [256, *range(60, 120)]
    (gen,) = generate(model, tok, [prompt], max_tokens=8, max_seq_len=32)
    assert gen.tokens == reference_greedy(model, prompt[-24:], 8, 256)


def test_sampling_is_seeded_and_differs_from_greedy(byte_tok):
    tok, model = byte_tok, TinyCachedAttention().eval()
    prompts = [[256, *p] for p in tok.encode_batch(PROMPTS)]
    kw = dict(max_tokens=[16] * 4, max_seq_len=64)
    hot = Sampling(temperature=2.0, top_k=50, top_p=0.95, seed=1)
    a = generate(model, tok, prompts, sampling=hot, **kw)
    b = generate(model, tok, prompts, sampling=hot, **kw)
    greedy = generate(model, tok, prompts, **kw)
    assert [g.tokens for g in a] == [g.tokens for g in b]
    assert [g.tokens for g in a] != [g.tokens for g in greedy]
    with pytest.raises(ValueError, match="Sampling.top_p"):
        Sampling(top_p=0)


def _fsdp_rank(rank, init_file, out, tok, spec):
    """A rank of a job that trains with FSDP2: the model sharded whole (its root), one backward
    (which reshards the parameters), then the in-loop eval with a generate task."""
    import pickle

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from llm_eval import InLoopEval

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = fully_shard(TinyCachedAttention(), mesh=init_device_mesh("cpu", (2,)))
        model(torch.tensor([[256, 1, 2, 3]])).logsumexp(-1).mean().backward()
        evaluate = InLoopEval(
            tok, ["the cat sat on the mat."], every=1, seq_len=64, specs=[spec], spec_limit=4
        )
        (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(evaluate(1, model)))
    finally:
        dist.destroy_process_group()


def test_in_loop_generation_on_an_fsdp_sharded_model(byte_tok, tmp_path):
    """Under torchrun the trained model is FSDP2-sharded; scoring and generation call its
    ``hidden_states`` / ``logits``, which FSDP2 does not hook (after a backward they would see
    sharded parameters). On 2 gloo ranks the in-loop eval, bits per byte and a generate-until
    task, gives each rank the metrics of one process on the whole model."""
    import pickle

    import torch.multiprocessing as mp

    from llm_eval import InLoopEval
    from llm_eval.task_spec import TaskSpec

    sciq = Path(__file__).parents[3] / "data" / "sample" / "eval" / "sciq.jsonl.gz"
    spec = TaskSpec(path=str(sciq), kind="generate", max_tokens=6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same kernels
    try:
        one = InLoopEval(
            byte_tok, ["the cat sat on the mat."], every=1, seq_len=64, specs=[spec], spec_limit=4
        )
        want = one(1, TinyCachedAttention())
    finally:
        torch.set_num_threads(threads)
    mp.start_processes(
        _fsdp_rank, args=(tmp_path / "pg", tmp_path, byte_tok, spec), nprocs=2, start_method="fork"
    )
    assert "eval/sciq_gen/exact_match" in want
    for rank in range(2):
        assert pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) == want, rank
