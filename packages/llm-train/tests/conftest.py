"""A toy model and a resumable toy loader that meet llm-train's protocols (no llm_model)."""

from __future__ import annotations

import hashlib
import os
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

VOCAB, D_MODEL, SEQ_LEN = 32, 16, 8


class ToyBlock(nn.Module):
    def __init__(self, d: int, dropout: float, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.w1 = nn.Linear(d, hidden)
        self.w2 = nn.Linear(hidden, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.w2(F.gelu(self.w1(self.norm(x)))))


class ToyModel(nn.Module):
    """Embedding -> residual MLP blocks -> norm -> head; dropout makes RNG state matter.

    ``hidden=256`` gives 4096-value MLP matrices: the smallest torchao quantizes to 8 bits."""

    def __init__(self, n_layers: int = 2, dropout: float = 0.1, hidden: int = 2 * D_MODEL) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.blocks = nn.ModuleList(ToyBlock(D_MODEL, dropout, hidden) for _ in range(n_layers))
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB, bias=False)
        if not self.head.weight.is_meta:  # as llm_model's Transformer: one definition of init
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """The trainable-model protocol's initialiser, as llm_model does it: each parameter drawn
        whole from a generator seeded by (seed, its name), then sliced to its local shard."""
        from torch.distributed.tensor import DTensor
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        seed = torch.initial_seed() if seed is None else seed
        for name, param in self.named_parameters():
            name = name.replace("._checkpoint_wrapped_module", "")
            digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
            g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            whole = torch.empty(param.shape)
            if name.endswith("bias"):
                whole.zero_()
            elif "norm" in name:
                whole.fill_(1.0)
            else:
                whole.normal_(std=0.02, generator=g)
            if isinstance(param, DTensor):
                shape, offset = compute_local_shape_and_global_offset(
                    param.shape, param.device_mesh, param.placements
                )
                where = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
                param.to_local().copy_(whole[where])
            else:
                param.copy_(whole)

    def forward(self, input_ids, labels=None):
        x = self.embed(input_ids)  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))  # (B, T, V)
        if labels is None:
            return logits
        ce = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        # Like llm_model: every part is a mean over the target tokens (labels != -100).
        valid = (labels != -100).float()
        lse2 = torch.logsumexp(logits.float(), dim=-1).pow(2)
        z_loss = 1e-4 * (lse2 * valid).sum() / valid.sum().clamp(min=1)
        return {"loss": ce + z_loss, "ce": ce, "z_loss": z_loss}

    def flops_per_token(self, seq_len: int) -> float:
        return 6.0 * sum(p.numel() for p in self.parameters())


class ToyLoader:
    """Deterministic batches of counting sequences (next token = token + 1 mod V).

    Batch ``(epoch, position)`` depends only on those two numbers, which are its state.
    """

    def __init__(self, batch_size: int = 4, batches_per_epoch: int = 7, seed: int = 0) -> None:
        self.batch_size, self.batches_per_epoch, self.seed = batch_size, batches_per_epoch, seed
        self.epoch, self.position = 0, 0

    def batch(self, epoch: int, position: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch * 1_009 + position)
        start = torch.randint(0, VOCAB, (self.batch_size, 1), generator=g)
        seq = (start + torch.arange(SEQ_LEN + 1)) % VOCAB  # (B, T + 1)
        return {"input_ids": seq[:, :-1], "labels": seq[:, 1:].clone()}

    def __iter__(self):
        while self.position < self.batches_per_epoch:
            batch = self.batch(self.epoch, self.position)
            self.position += 1
            yield batch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


@pytest.fixture(autouse=True)
def one_thread():
    """Toy tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spin-waiting made each toy backward ~100x slower (0.6 s vs 5 ms, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Crash(Exception):
    pass


class CrashAt:
    """A callback that kills the run after step ``step`` (before its checkpoint)."""

    every = 1

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step, model):
        if step == self.step:
            raise Crash
        return {}


def trained(seed: int) -> tuple[ToyModel, torch.optim.Optimizer]:
    """A toy model and its AdamW after one step on batch ``seed`` (state to checkpoint)."""
    from llm_train.config import TrainConfig
    from llm_train.optimizer import build_optimizer

    torch.manual_seed(seed)
    model = ToyModel()
    optimizer = build_optimizer(model, TrainConfig(steps=1, lr=1e-2))
    model(**ToyLoader().batch(0, seed))["loss"].backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture
def toy() -> SimpleNamespace:
    """The toy classes (fixtures, since tests are imported with --import-mode=importlib)."""
    return SimpleNamespace(
        Model=ToyModel, Loader=ToyLoader, vocab=VOCAB, seq_len=SEQ_LEN, Crash=Crash,
        CrashAt=CrashAt, trained=trained,
    )  # fmt: skip


@pytest.fixture
def eager_torchao(monkeypatch):
    """Run torchao's optimizer step eagerly: it ``torch.compile``s its per-parameter step, which
    costs ~50 s of C++ builds on 2 busy CPU cores (measured) for the same math on toy tensors."""
    pytest.importorskip("torchao", reason="torchao not installed (the [ao] extra)")
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)


_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__format__", "__index__")


@pytest.fixture
def host_reads(monkeypatch) -> list[tuple[str, str]]:
    """Calls from llm_train's own code that read a tensor's value on the host (a device sync
    on an accelerator). Torch's internals are not counted: AdamW reads its CPU step counter."""
    calls = []
    for name in _READS:
        original = getattr(torch.Tensor, name)

        def read(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if f"{os.sep}llm_train{os.sep}" in caller:
                calls.append((_name, caller))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)
    return calls
