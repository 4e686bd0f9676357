"""Batch-size warmup: the global batch grows from a start size to its target during the first
``batch_warmup_tokens`` training tokens, by taking more of the loader's fixed micro-batches per
optimizer step (gradient accumulation); the loader itself is unchanged.

The step that starts after ``tokens`` training tokens (all ranks, counted as input tokens, the
trainer's ``tokens``) wants a global batch of

    want = start + (target - start) * tokens / batch_warmup_tokens   (while tokens < it)

tokens, where ``target = grad_accum_steps * micro`` and ``micro`` is the tokens of one micro-batch
on all ranks (``B * T * world_size``), ``start = min(batch_warmup_start_tokens, target)``. It takes
``ceil(want / micro)`` micro-batches, at least 1 and at most ``grad_accum_steps``; from
``batch_warmup_tokens`` on, always ``grad_accum_steps``. The count is a pure function of the
tokens trained so far (checkpointed) and the config, so a run resumed during the ramp takes the
same micro-batches per step as one that never stopped.

Loss normalisation does not change: a step's loss is the mean over the target tokens
(``labels != -100``) of the micro-batches it took, on all ranks (see ``train_step``). A
short step of the ramp is therefore not scaled down relative to a full one: its gradient is the
mean gradient per target token of its own smaller batch, with more noise, not a partial sum
divided by the target batch's token count.
"""

from __future__ import annotations

from llm_train.config import TrainConfig

__all__ = ["micro_batches_at"]


def micro_batches_at(tokens: int, micro_tokens: int, config: TrainConfig) -> int:
    """Micro-batches for the step that starts after ``tokens`` training tokens.

    Args:
        tokens: Input tokens trained on so far, all ranks.
        micro_tokens: Input tokens of one micro-batch, all ranks.
        config: Supplies ``grad_accum_steps``, ``batch_warmup_tokens``,
            ``batch_warmup_start_tokens``.
    """
    full, ramp = config.grad_accum_steps, config.batch_warmup_tokens
    if ramp <= 0 or tokens >= ramp:
        return full
    target = full * micro_tokens
    start = min(config.batch_warmup_start_tokens, target)
    # want = start + (target - start) * tokens / ramp, in integers: ceil(want / micro_tokens).
    numerator = start * ramp + (target - start) * tokens
    count = -(-numerator // (micro_tokens * ramp))
    return max(1, min(full, count))
