"""tools/memory.py against what a real CPU step allocates: exact state bytes, and activations
against the bytes autograd saves (saved-tensor hooks), for four block layouts."""

from __future__ import annotations

import pytest
import torch

from llm_model import Transformer, get_preset
from llm_train import TrainConfig, build_optimizer, build_scheduler, train_step
from llm_train.parallel import apply_activation_checkpointing
from tools import memory

TINY = dict(n_layers=2, d_model=64, n_heads=4, vocab_size=300)
LAYOUTS = {
    "llama (rms, swiglu, rope, GQA)": ("debug", dict(n_layers=3)),
    "gpt2 (layernorm, gelu, learned)": ("gpt2-124m", TINY),
    "olmo2 (sublayer norm, full qk-norm)": (
        "olmo2-1b", dict(TINY, n_kv_heads=4, ffn_hidden=160)),
    "post-norm, head qk-norm, relu": (
        "debug", dict(norm_position="post", qk_norm="head", activation="relu", n_layers=2)),
}  # fmt: skip
TOLERANCE = 0.03  # activations: estimate within 3% of the bytes autograd saved


def _batch(vocab: int, b: int, t: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (b, t + 1), generator=g)
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:].clone()}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("ac", [False, True], ids=["no-ac", "ac"])
def test_activations_match_saved_tensors(layout, ac):
    name, overrides = LAYOUTS[layout]
    config = get_preset(name, kernels=False, **overrides)
    b, t = 2, 48
    model = Transformer(config)
    if ac:
        apply_activation_checkpointing(model)
    measured = memory.saved_activation_bytes(model, _batch(config.vocab_size, b, t))
    plan = memory.MemoryPlan(
        config=config, seq_len=t, micro_batch=b, precision="fp32", activation_checkpointing=ac
    )
    est = memory.estimate(plan)
    # with checkpointing, forward keeps the block inputs; the recomputed block comes in backward
    saved = est.activations - (est.activations_per_layer if ac else 0)
    assert saved == pytest.approx(measured, rel=TOLERANCE), (layout, ac, saved, measured)


def test_per_layer_count_by_hand_for_debug():
    # debug: d 128, H 4 x 32, 2 KV heads, SwiGLU 384. Per token of a layer, fp32 (4 bytes):
    # 6 x d (x, n, y for both sublayers) + 2 (1/rms) + 2 q (q', out) + 2 kv + 4 x 384 (FFN)
    # + H (logsumexp, per head) = 768 + 2 + 256 + 128 + 1536 + 4 = 2694 floats.
    plan = memory.MemoryPlan(config=get_preset("debug"), seq_len=64, micro_batch=2,
                             precision="fp32")  # fmt: skip
    assert memory.estimate(plan).activations_per_layer == 4 * 2694 * 128


def test_state_bytes_of_a_real_step_match_the_estimate():
    config = get_preset("debug", kernels=False)
    model = Transformer(config)
    train = TrainConfig(steps=2, precision="fp32")
    optimizer = build_optimizer(model, train)
    train_step(
        model,
        [_batch(config.vocab_size, 2, 32)],
        optimizer,
        build_scheduler(optimizer, train),
        train,
    )
    measured = memory.state_bytes(model, optimizer)
    est = memory.estimate(
        memory.MemoryPlan(config=config, seq_len=32, micro_batch=2, precision="fp32")
    )
    assert measured["params"] == est.params == 4 * model.num_params()
    assert measured["gradients"] == est.gradients
    # AdamW keeps exp_avg and exp_avg_sq (8 bytes/param) and a 4-byte step count per tensor
    n_tensors = len(list(model.parameters()))
    assert measured["optimizer"] == est.optimizer + 4 * n_tensors


def config_params(config):
    with torch.device("meta"):
        return Transformer(config).num_params()


def test_lion_state_of_a_real_step_matches_the_estimate():
    config = get_preset("debug", kernels=False)
    model = Transformer(config)
    train = TrainConfig(steps=2, precision="fp32", optimizer="lion", lr=1e-4)
    optimizer = build_optimizer(model, train)
    train_step(model, [_batch(config.vocab_size, 2, 32)], optimizer,
               build_scheduler(optimizer, train), train)  # fmt: skip
    est = memory.estimate(memory.MemoryPlan(config=config, seq_len=32, micro_batch=2,
                                            precision="fp32", optimizer="lion"))  # fmt: skip
    assert memory.state_bytes(model, optimizer)["optimizer"] == est.optimizer


def test_scaling_rules():
    config = get_preset("llama-7b")
    base = dict(config=config, seq_len=4096, micro_batch=1)
    one = memory.estimate(memory.MemoryPlan(**base))
    two = memory.estimate(memory.MemoryPlan(**{**base, "micro_batch": 2}))
    assert two.activations_per_layer == 2 * one.activations_per_layer
    ac = memory.estimate(memory.MemoryPlan(**base, activation_checkpointing=True))
    assert ac.activations < one.activations / 5  # 32 layers: inputs only, plus one block
    sharded = memory.estimate(memory.MemoryPlan(**base, fsdp=8))
    assert sharded.params == one.params // 8 and sharded.optimizer == one.optimizer // 8
    eight_bit = memory.estimate(memory.MemoryPlan(**base, optimizer="adamw8bit"))
    assert eight_bit.optimizer < one.optimizer / 3.9
    lion = memory.estimate(memory.MemoryPlan(**base, optimizer="lion"))  # one state, not two
    assert lion.optimizer == one.optimizer // 2 == 4 * config_params(config)
    # 7B in AdamW, unsharded: 4 + 4 + 8 bytes x 6.74e9 = 100 GiB before any activation
    assert (one.params + one.gradients + one.optimizer) / 2**30 == pytest.approx(100.4, abs=0.1)


def test_fsdp2_bf16_gathers_the_root_and_keeps_bf16_block_inputs():
    """What `pretrain plan` measured (benchmarks/results/plan-llama3-70b-256.md): under FSDP2's
    bf16 param dtype the checkpointed block inputs are bf16, and around the loss the root's
    gathered embeddings and head (1.05B parameters each at vocab 128,256) sit beside a block."""
    config = get_preset("llama3-70b")
    base = dict(config=config, seq_len=8192, micro_batch=1, activation_checkpointing=True)
    one = memory.estimate(memory.MemoryPlan(**base))
    fsdp = memory.estimate(memory.MemoryPlan(**base, fsdp=32))
    tokens_d = 8192 * 8192
    assert one.activations - fsdp.activations == 80 * (4 - 2) * tokens_d
    n, blocks = config_params(config), 80 * 855_654_400  # Llama-3-70B: 855,654,400 per block
    assert fsdp.weight_copies == 2 * (855_654_400 + (n - blocks))


def test_bad_plan_is_a_clear_error():
    with pytest.raises(ValueError, match=r"MemoryPlan.micro_batch=0 must be an integer >= 1"):
        memory.MemoryPlan(config=get_preset("debug"), seq_len=8, micro_batch=0)
    with pytest.raises(ValueError, match=r"MemoryPlan.optimizer='sgd'"):
        memory.MemoryPlan(config=get_preset("debug"), seq_len=8, micro_batch=1, optimizer="sgd")


def test_cli(capsys):
    assert memory.main(["llama-7b", "--seq-len", "4096", "--activation-checkpointing"]) == 0
    out = capsys.readouterr().out
    assert "| params | 25.1" in out and "| peak |" in out
