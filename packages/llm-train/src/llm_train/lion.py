"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): sign updates.

Hand-written: torch has no Lion, and the packages that do (lion-pytorch, pytorch-optimizer) step
parameter by parameter on DTensors; this one is ~40 lines, steps FSDP2 shards through their local
tensors (the update is elementwise, so each rank's shard is updated exactly as the whole tensor
would be) and batches the math with torch's ``_foreach`` kernels.

One step, per parameter ``p`` with gradient ``g`` and state ``m`` (zeros at first)::

    p <- p * (1 - lr * weight_decay)
    p <- p - lr * sign(beta1 * m + (1 - beta1) * g)
    m <- beta2 * m + (1 - beta2) * g
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch

__all__ = ["Lion"]


class Lion(torch.optim.Optimizer):
    """Lion with decoupled weight decay; one state tensor (``exp_avg``) per parameter.

    Args:
        params: Parameters or param groups (``lr``, ``betas``, ``weight_decay`` per group).
        lr: Learning rate (typically 3-10x smaller than AdamW's).
        betas: ``beta1`` interpolates momentum and gradient for the update's sign; ``beta2`` is
            the momentum's decay.
        weight_decay: Decoupled weight decay (typically 3-10x larger than AdamW's).
        foreach: Use torch's multi-tensor kernels, one launch per (device, dtype) group.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        foreach: bool = True,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"Lion: lr={lr} must be > 0")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lion: betas={betas} must be in [0, 1)")
        if weight_decay < 0:
            raise ValueError(f"Lion: weight_decay={weight_decay} must be >= 0")
        defaults = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, moms = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(_local(p))
                grads.append(_local(p.grad))
                moms.append(_local(state["exp_avg"]))
            if params:
                update = _step_foreach if self.foreach else _step_loop
                update(params, grads, moms, group["lr"], *group["betas"], group["weight_decay"])
        return loss


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (shares its storage: in-place ops update the DTensor)."""
    return t.to_local() if hasattr(t, "to_local") else t


def _step_foreach(params, grads, moms, lr, beta1, beta2, weight_decay) -> None:
    groups = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype)].append(i)
    for index in groups.values():
        ps, gs, ms = ([xs[i] for i in index] for xs in (params, grads, moms))
        if weight_decay:
            torch._foreach_mul_(ps, 1 - lr * weight_decay)
        direction = torch._foreach_lerp(ms, gs, 1 - beta1)  # beta1 * m + (1 - beta1) * g
        torch._foreach_sign_(direction)
        torch._foreach_add_(ps, direction, alpha=-lr)
        torch._foreach_lerp_(ms, gs, 1 - beta2)


def _step_loop(params, grads, moms, lr, beta1, beta2, weight_decay) -> None:
    for p, g, m in zip(params, grads, moms, strict=True):
        if weight_decay:
            p.mul_(1 - lr * weight_decay)
        p.add_(m.lerp(g, 1 - beta1).sign_(), alpha=-lr)
        m.lerp_(g, 1 - beta2)
