import torch

from llm_train.config import TrainConfig
from llm_train.optimizer import build_optimizer, split_decay_params


def test_no_decay_on_norms_biases_embeddings(toy):
    model = toy.Model(n_layers=2)
    model.head.weight = model.embed.weight  # tied head: shared Parameter, not decayed
    decay, no_decay = split_decay_params(model)
    decay_ids = {id(p) for p in decay}
    assert decay_ids == {id(b.w1.weight) for b in model.blocks} | {
        id(b.w2.weight) for b in model.blocks
    }
    assert id(model.embed.weight) in {id(p) for p in no_decay}
    n_params = len(list(model.parameters()))
    assert len(decay) + len(no_decay) == n_params


def test_build_optimizer_groups(toy):
    config = TrainConfig(steps=1, lr=2e-3, weight_decay=0.05, betas=(0.8, 0.9), eps=1e-6)
    optimizer = build_optimizer(toy.Model(), config)
    assert isinstance(optimizer, torch.optim.AdamW)
    wds = [g["weight_decay"] for g in optimizer.param_groups]
    assert wds == [0.05, 0.0]
    assert all(g["lr"] == 2e-3 and g["betas"] == (0.8, 0.9) for g in optimizer.param_groups)
    assert len(optimizer.param_groups[0]["params"]) == 5  # w1, w2 of 2 blocks + head
