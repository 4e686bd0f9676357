"""Batched log-likelihood of continuations given contexts: the core of every metric here.

Two paths compute the same numbers:

- packed (models whose forward takes ``positions`` and ``attn_mask``, see `supports_packing`):
  the requests that share a context become one row, ``context + choice_1 + choice_2 + ...``,
  with a mask under which each choice sees the context and its own tokens only and positions
  that restart after the context, so each context runs once however many choices follow it;
- plain (any ``model(input_ids) -> logits``): one row per request, right-padded.

Identical requests (after left truncation) are scored once and share the score, so two
identical choices tie exactly (`_distinct`). Rows are sorted by length and batched by a token
budget; packed, shorter rows fill the
padding of longer ones (`_batches`). Only the positions that predict a continuation token go
through the output head, a chunk at a time (`_target_logprobs`). Under ``torch.distributed``
each rank can score a share of the batches (``ranks=``, see `llm_eval.ranks`).
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from llm_eval.protocols import LanguageModel
from llm_eval.ranks import Ranks, assign, gather_rows, steps

IGNORE = -100
# logits reduced per chunk of scored positions (see `_target_logprobs`): 4 MB of float32 on a
# CPU (cache-sized), 256 MB on an accelerator (few, large kernels)
_CHUNK_ELEMENTS = {"cpu": 1 << 20, "accelerator": 1 << 26}


@dataclass(frozen=True)
class Request:
    """Score ``continuation`` token ids given ``context`` token ids (context has >= 1 token)."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Score:
    """Result of one request: summed log-probability (nats), its token count, greedy match."""

    logprob: float
    tokens: int
    greedy: bool


def check_request(req: Request, max_seq_len: int) -> str | None:
    """Why ``req`` cannot be scored within ``max_seq_len`` positions, or None when it can."""
    if not req.context or not req.continuation:
        return "empty context or continuation"
    if len(req.continuation) > max_seq_len:
        return f"continuation of {len(req.continuation)} tokens > max_seq_len={max_seq_len}"
    return None


def _truncated_context(req: Request, max_seq_len: int) -> tuple[int, ...]:
    """The context cut from the left so that context + continuation - 1 <= max_seq_len."""
    keep = max_seq_len + 1 - len(req.continuation)
    return req.context[-keep:]


@dataclass
class _Row:
    """One model input: a context followed by the continuations of the requests sharing it."""

    context: tuple[int, ...]
    members: list[int]  # request indices


def _takes(fn, *names: str) -> bool:
    """Whether ``fn`` accepts keyword arguments ``names`` (checked by name)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(name in params for name in names)


def supports_packing(model: LanguageModel) -> bool:
    """Whether ``model(input_ids, positions=..., attn_mask=...)`` is accepted (checked by name)."""
    return _takes(getattr(model, "forward", model), "positions", "attn_mask")


def _rows(requests: Sequence[Request], max_seq_len: int, packed: bool) -> list[_Row]:
    if not packed:
        return [_Row(_truncated_context(r, max_seq_len), [i]) for i, r in enumerate(requests)]
    # requests share a row when their (truncated) contexts are equal, so every continuation
    # sees exactly the context it would see alone
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, req in enumerate(requests):
        groups.setdefault(_truncated_context(req, max_seq_len), []).append(i)
    # a row holds at most 2 * max_seq_len tokens (its mask is quadratic in its length): a
    # context with many long continuations is split over several rows
    rows = []
    for ctx, members in groups.items():
        row = _Row(ctx, [])
        for i in members:
            if row.members and _row_length(row, requests) + len(requests[i].continuation) > (
                2 * max_seq_len
            ):
                rows.append(row)
                row = _Row(ctx, [])
            row.members.append(i)
        rows.append(row)
    return rows


def _row_length(row: _Row, requests: Sequence[Request]) -> int:
    return len(row.context) + sum(len(requests[i].continuation) - 1 for i in row.members)


@dataclass
class _Batch:
    inputs: torch.Tensor  # (B, L) token ids, right-padded
    positions: torch.Tensor  # (B, L): restart at 0 for each row laid in a line
    rows: torch.Tensor  # (B, L): which row of the line a token belongs to, -1 pad
    segments: torch.Tensor  # (B, L): 0 context, k > 0 the k-th continuation of its row
    at: torch.Tensor  # (N, 2) (line, position) that predicts each scored token
    targets: torch.Tensor  # (N,) the token it predicts
    owner: torch.Tensor  # (N,) index (into the batch's requests) of the request it belongs to
    requests: list[int]  # request indices in this batch


def _build_batch(lines: Sequence[Sequence[_Row]], requests: Sequence[Request]) -> _Batch:
    """Lay out each line's rows end to end, each row as ``context + cont_1[:-1] + cont_2[:-1]
    + ...``, with the indices of the positions that score each continuation token."""
    length = max(sum(_row_length(r, requests) for r in line) for line in lines)
    ids, pos, row_ids, seg, targets, members = [], [], [], [], [], []
    line_of, context_end, start_of, n_tokens = [], [], [], []  # per request
    for b, line in enumerate(lines):
        l_ids, l_pos, l_row, l_seg = [], [], [], []
        for r, row in enumerate(line):
            c, first = len(row.context), len(l_ids)
            l_ids += row.context
            l_pos += range(c)
            l_seg += [0] * c
            for k, i in enumerate(row.members, start=1):
                cont = requests[i].continuation
                line_of.append(b)
                context_end.append(first + c)
                start_of.append(len(l_ids))
                n_tokens.append(len(cont))
                l_ids += cont[:-1]
                l_pos += range(c, c + len(cont) - 1)
                l_seg += [k] * (len(cont) - 1)
                targets += cont
                members.append(i)
            l_row += [r] * (len(l_ids) - first)
        pad = length - len(l_ids)
        ids.append(l_ids + [0] * pad)
        pos.append(l_pos + [0] * pad)
        row_ids.append(l_row + [-1] * pad)
        seg.append(l_seg + [0] * pad)
    # token j of a continuation starting at s is predicted at s + j - 1, except the first,
    # which the context's last token predicts
    n = torch.tensor(n_tokens)
    owner = torch.repeat_interleave(torch.arange(len(members)), n)
    j = torch.arange(len(owner)) - (torch.cumsum(n, 0) - n)[owner]
    at_pos = torch.where(
        j == 0, torch.tensor(context_end)[owner] - 1, torch.tensor(start_of)[owner] + j - 1
    )
    return _Batch(
        torch.tensor(ids),
        torch.tensor(pos),
        torch.tensor(row_ids),
        torch.tensor(seg),
        torch.stack([torch.tensor(line_of)[owner], at_pos], 1),
        torch.tensor(targets),
        owner,
        members,
    )


def _tree_mask(rows: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """(B, L, L): key s visible to query t when s <= t, both are in the same row, and s is that
    row's context or t's own continuation.

    A row's continuations are contiguous and come after its context, so this is exactly "my
    row's context and my own earlier tokens": each request sees what it would see alone.
    """
    L = rows.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=rows.device).tril()
    same_row = (rows.unsqueeze(2) == rows.unsqueeze(1)) & (rows.unsqueeze(1) >= 0)
    q, k = segments.unsqueeze(2), segments.unsqueeze(1)
    return causal & same_row & ((k == 0) | (k == q))


def splits_head(model: LanguageModel) -> bool:
    """Whether the model exposes ``hidden_states(input_ids, **kw)`` and ``logits(h)`` (as
    llm_model.Transformer does): then only the positions that are scored go through the output
    head, which for a small model with a large vocabulary is much of the work."""
    return callable(getattr(model, "hidden_states", None)) and callable(
        getattr(model, "logits", None)
    )


def _scored(model: LanguageModel, batch: _Batch, packed: bool):
    """(x, head): ``head(x)`` are the (N, V) logits at the positions in ``batch.at``; x are
    hidden states when the model splits its head (see `splits_head`), else logits already."""
    kwargs = {}
    if packed:
        kwargs = {
            "positions": batch.positions,
            "attn_mask": _tree_mask(batch.rows, batch.segments),
        }
    if splits_head(model):
        if _takes(model.hidden_states, "keep"):  # the last block runs at scored positions only
            return model.hidden_states(batch.inputs, keep=batch.at, **kwargs), model.logits
        h = model.hidden_states(batch.inputs, **kwargs)
        return h[batch.at[:, 0], batch.at[:, 1]], model.logits
    out = model(batch.inputs, **kwargs)
    logits = getattr(out, "logits", out)  # also accept HF-style outputs
    if not isinstance(logits, torch.Tensor) or logits.shape[:2] != batch.inputs.shape:
        shape = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(
            f"model must return logits [B, T, V] for input {tuple(batch.inputs.shape)}, got {shape}"
        )
    return logits[batch.at[:, 0], batch.at[:, 1]], lambda x: x


def _target_logprobs(x, head, targets, amp, chunk_elements: int):
    """(log-probability of each target, whether it is the argmax), ``head(x)`` a chunk of rows
    at a time: on a CPU a chunk of logits that fits in cache is reduced while it is there
    (several times faster than a full-size log-softmax and argmax), and the (N, V) logits
    never exist at once."""
    lp, hit = [], []
    start, rows = 0, 64  # until the first chunk tells the vocabulary size
    while start < len(x):
        with amp:
            logits = head(x[start : start + rows]).float()
        t = targets[start : start + len(logits)]
        best = logits.amax(-1)
        target = logits.gather(1, t[:, None]).squeeze(1)
        # greedy: the target is the first maximum (argmax's tie rule), checked only where
        # the target reaches the maximum
        top = target == best
        at_top = top.nonzero().squeeze(1)
        top[at_top] = logits[at_top].argmax(-1) == t[at_top]
        hit.append(top)
        # in place: the chunk is this function's own (a head output or an indexed copy)
        lp.append(target - best - logits.sub_(best[:, None]).exp_().sum(-1).log_())
        start += len(logits)
        rows = max(1, chunk_elements // logits.shape[-1])
    return torch.cat(lp), torch.cat(hit)


def _batches(
    rows: list[_Row], requests: Sequence[Request], batch_size: int, max_tokens: int, fill: bool
):
    """Batches of lines (lists of rows laid end to end), longest rows first.

    A batch's lines are as long as its longest row and hold at most ``batch_size`` lines and
    ``max_tokens`` tokens. With ``fill`` (packed scoring, where a mask keeps rows apart), each
    line is topped up with the longest remaining rows that still fit, so shorter rows fill
    what would be padding instead of costing batches of their own.
    """
    lengths = {id(r): _row_length(r, requests) for r in rows}
    left = sorted(rows, key=lambda r: lengths[id(r)])  # shortest first: pop() takes the longest
    sizes = [lengths[id(r)] for r in left]
    while left:
        cap = sizes[-1]
        lines = []
        while left and len(lines) < min(batch_size, max(1, max_tokens // cap)):
            line, space = [left.pop()], cap - sizes.pop()
            while fill and left:
                j = bisect.bisect_right(sizes, space) - 1
                if j < 0:
                    break
                space -= sizes.pop(j)
                line.append(left.pop(j))
            lines.append(line)
        yield lines


def score_requests(
    model: LanguageModel,
    requests: Sequence[Request],
    *,
    batch_size: int,
    max_seq_len: int,
    device: torch.device | str,
    packed: bool | None = None,
    autocast: bool = False,
    progress: Callable[[int], None] | None = None,
    ranks: Ranks | None = None,
) -> list[Score]:
    """Summed log-probability of each continuation, returned in input order.

    Contexts are truncated from the left so that context + continuation fits ``max_seq_len``
    positions; requests that are then identical get one (bit-identical) score. Call under
    `eval_mode`.

    Args:
        model: ``model(input_ids) -> logits [B, T, V]`` (or an object with ``.logits``).
        requests: What to score.
        batch_size: Rows per forward pass (a row is one request, or one context with all the
            requests that share it when packed); a batch also holds at most
            ``batch_size * max_seq_len`` tokens.
        max_seq_len: Longest model input.
        device: Where inputs go.
        packed: Share each context among its requests; None = when `supports_packing`.
        autocast: Run the forward pass under bf16 autocast (log-softmax stays in float32).
        progress: Called with the number of requests each batch finished (with ``ranks``:
            that all ranks finished at each step).
        ranks: Share the batches among the ranks of a ``torch.distributed`` job (see
            `llm_eval.ranks`); every rank returns every request's score, the same as one
            process's. None: this process scores everything.

    Raises:
        ValueError: For an empty context or continuation, a continuation longer than
            ``max_seq_len`` (callers skip those first, see `check_request`), or a model
            output that is not [B, T, V].
    """
    for req in requests:
        reason = check_request(req, max_seq_len)
        if reason:
            raise ValueError(f"cannot score request {req}: {reason}")
    packed = supports_packing(model) if packed is None else packed
    device = torch.device(device)
    ranks = ranks or Ranks()
    asked = requests
    requests, copies = _distinct(asked, max_seq_len)
    rows = _rows(requests, max_seq_len, packed)
    plan = list(_batches(rows, requests, batch_size, batch_size * max_seq_len, fill=packed))
    # padded tokens per batch: what its forward pass computes
    owner = assign([len(lines) * _line_length(lines, requests) for lines in plan], ranks.world)
    mine, n_steps = steps(owner, ranks)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    chunk = _CHUNK_ELEMENTS["cpu" if device.type == "cpu" else "accelerator"]
    done = _progress_per_step(plan, owner, ranks.world, [len(c) for c in copies])
    # lockstep: a rank out of batches runs the shortest row again (and drops its result), so
    # that every rank's forwards, and so the sharded model's all-gathers, match
    dummy = [[min(rows, key=lambda row: _row_length(row, requests))]] if rows else []
    results = []
    for step in range(n_steps):
        lines = plan[mine[step]] if step < len(mine) else dummy
        scored = _score_batch(model, lines, requests, packed, device, amp, chunk)
        if step < len(mine):
            results += scored
        if progress is not None:
            progress(done[step])
    scores: list[Score | None] = [None] * len(asked)
    for i, lp, n, g in gather_rows(results, ranks):
        for j in copies[i]:
            scores[j] = Score(lp, n, g)
    return scores  # type: ignore[return-value]  # every request is in exactly one batch


def _distinct(
    requests: Sequence[Request], max_seq_len: int
) -> tuple[list[Request], list[list[int]]]:
    """(the distinct requests as the model sees them, i.e. after left truncation; for each,
    the indices of ``requests`` that are copies of it).

    Each is scored once and its score shared: packed, two copies would sit at different
    offsets of a row, where float rounding differs (up to 1.9e-6 nats measured), and an item
    with two identical choices must tie exactly for "ties go to the first choice" to hold.
    """
    index: dict[Request, int] = {}
    copies: list[list[int]] = []
    for j, req in enumerate(requests):
        key = Request(_truncated_context(req, max_seq_len), req.continuation)
        if key not in index:
            index[key] = len(copies)
            copies.append([])
        copies[index[key]].append(j)
    return list(index), copies


def _line_length(lines: Sequence[Sequence[_Row]], requests: Sequence[Request]) -> int:
    return max(sum(_row_length(r, requests) for r in line) for line in lines)


def _progress_per_step(plan, owner: Sequence[int], world: int, weight: Sequence[int]) -> list[int]:
    """Requests finished by all ranks at each step (every rank's k-th batch runs at step k),
    a distinct request counting ``weight[i]`` (its copies): a progress bar on one rank shows
    the whole job's progress."""
    by_rank: list[list[int]] = [[] for _ in range(world)]
    for lines, r in zip(plan, owner, strict=True):
        by_rank[r].append(sum(weight[i] for line in lines for row in line for i in row.members))
    longest = max((len(b) for b in by_rank), default=0)
    return [sum(b[k] for b in by_rank if k < len(b)) for k in range(longest)]


def _score_batch(model, lines, requests, packed: bool, device, amp, chunk: int) -> list[tuple]:
    """``(request index, summed log-probability, tokens, greedy)`` of each request in ``lines``."""
    batch = _build_batch(lines, requests)
    for name in ("inputs", "positions", "rows", "segments", "at", "targets", "owner"):
        setattr(batch, name, getattr(batch, name).to(device, non_blocking=True))
    with amp:
        x, head = _scored(model, batch, packed)
    token_lp, hit = _target_logprobs(x, head, batch.targets, amp, chunk)
    k = len(batch.requests)
    sums = torch.zeros(k, dtype=torch.float64, device=device)
    sums.index_add_(0, batch.owner, token_lp.double())
    misses = torch.zeros(k, dtype=torch.long, device=device).index_add_(
        0, batch.owner, (~hit).long()
    )
    counts = torch.bincount(batch.owner, minlength=k)
    return list(
        zip(batch.requests, sums.tolist(), counts.tolist(), (misses == 0).tolist(), strict=True)
    )
