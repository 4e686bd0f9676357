import random

import pytest
import torch

from llm_eval.scoring import Request, score_requests


def reference(model, req: Request, max_seq_len: int) -> tuple[float, bool]:
    """One request, unbatched, no padding."""
    full = torch.tensor([*req.context, *req.continuation][-(max_seq_len + 1) :])
    logprobs = torch.log_softmax(model(full[None, :-1])[0], -1)
    n = len(req.continuation)
    target = full[-n:]
    span = logprobs[-n:]
    return span.gather(1, target[:, None]).sum().item(), bool((span.argmax(-1) == target).all())


def test_batched_right_padded_equals_unbatched(models):
    model = models.CausalMean().eval()
    rng = random.Random(0)
    requests = [
        Request(
            tuple(rng.randrange(257) for _ in range(rng.randint(1, 20))),
            tuple(rng.randrange(257) for _ in range(rng.randint(1, 6))),
        )
        for _ in range(23)
    ]
    with torch.no_grad():
        for max_seq_len in (8, 64):  # 8 truncates most contexts from the left
            scores = score_requests(
                model, requests, batch_size=5, max_seq_len=max_seq_len, device="cpu"
            )
            for req, score in zip(requests, scores, strict=True):
                logprob, greedy = reference(model, req, max_seq_len)
                assert score.logprob == pytest.approx(logprob, rel=1e-5)
                assert (score.tokens, score.greedy) == (len(req.continuation), greedy)


def test_errors_name_the_problem(models):
    model = models.Uniform(10)
    with pytest.raises(ValueError, match="3 tokens > max_seq_len=2"):
        score_requests(model, [Request((1,), (1, 2, 3))], batch_size=1, max_seq_len=2, device="cpu")
    with pytest.raises(ValueError, match="context"):
        score_requests(model, [Request((), (1,))], batch_size=1, max_seq_len=2, device="cpu")

    class Flat(torch.nn.Module):
        def forward(self, input_ids):
            return torch.zeros(input_ids.shape[0], 10)

    with pytest.raises(ValueError, match=r"logits \[B, T, V\]"):
        score_requests(Flat(), [Request((1,), (2,))], batch_size=1, max_seq_len=4, device="cpu")


def _shared_context_requests(seed: int = 0) -> list[Request]:
    """Items of 2-4 choices sharing a context, plus a few lone requests."""
    rng = random.Random(seed)
    requests = []
    for _ in range(15):
        context = tuple(rng.randrange(257) for _ in range(rng.randint(1, 30)))
        for _ in range(rng.randint(2, 4)):
            requests.append(
                Request(context, tuple(rng.randrange(257) for _ in range(rng.randint(1, 9))))
            )
    rng.shuffle(requests)
    return requests


@pytest.mark.parametrize("head", ["split", "keep", "full"])
@pytest.mark.parametrize("max_seq_len", [12, 64])
def test_packed_contexts_equal_one_request_at_a_time(models, max_seq_len, head):
    """Each context runs once for all its choices (tree mask, positions restarting after the
    context), yet every log-likelihood equals a plain unbatched forward pass; with
    ``hidden_states`` / ``logits`` only the scored positions go through the output head."""
    from llm_eval.scoring import _batches, _row_length, _rows, splits_head, supports_packing

    kinds = {"split": models.TinyAttention, "keep": models.TinyAttentionKeep}
    model = kinds.get(head, models.TinyAttentionNoHead)().eval()
    assert splits_head(model) == (head != "full")
    requests = _shared_context_requests()
    assert supports_packing(model) and not supports_packing(models.CausalMean())
    with torch.no_grad():
        scores = score_requests(
            model, requests, batch_size=4, max_seq_len=max_seq_len, device="cpu"
        )
        for req, score in zip(requests, scores, strict=True):
            logprob, greedy = reference(model, req, max_seq_len)
            assert score.logprob == pytest.approx(logprob, abs=1e-5)
            assert (score.tokens, score.greedy) == (len(req.continuation), greedy)
    # packing really shares: fewer rows than requests
    rows = _rows(requests, 64, packed=True)
    assert len(rows) < len(requests) / 2
    # and shorter rows fill the padding of longer ones: some lines hold several rows, and
    # every row is laid out exactly once
    lines = [line for batch in _batches(rows, requests, 4, 4 * 64, fill=True) for line in batch]
    assert any(len(line) > 1 for line in lines)
    assert sorted(id(r) for line in lines for r in line) == sorted(id(r) for r in rows)
    assert all(sum(_row_length(r, requests) for r in line) <= 64 * 2 for line in lines)


@pytest.mark.parametrize("head", ["keep", "full"])
def test_identical_requests_score_identically_when_packed(models, head):
    """Packed, two copies of a choice would sit at different offsets of a row, whose float
    rounding differs (this model: ~5e-7 nats on about one copy in six), and "ties go to the
    first choice" would then pick by noise. Copies are scored once: the scores are equal to
    the bit, and still equal the unbatched reference."""
    model = (models.TinyAttentionKeep if head == "keep" else models.TinyAttentionNoHead)().eval()
    rng = random.Random(0)
    requests = []
    for _ in range(24):  # items [a, b, a]: the first and last choice are the same string
        context = tuple(rng.randrange(257) for _ in range(rng.randint(1, 30)))
        a, b = (tuple(rng.randrange(257) for _ in range(rng.randint(1, 9))) for _ in "ab")
        requests += [Request(context, a), Request(context, b), Request(context, a)]
    with torch.no_grad():
        scores = score_requests(model, requests, batch_size=4, max_seq_len=64, device="cpu")
        for i in range(0, len(requests), 3):
            assert scores[i] == scores[i + 2], f"item {i // 3}: copies scored apart"
            assert scores[i].logprob == pytest.approx(
                reference(model, requests[i], 64)[0], abs=1e-5
            )
