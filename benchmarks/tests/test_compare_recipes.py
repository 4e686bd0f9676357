"""compare_recipes: every recipe trains on the same number of tokens as the baseline."""

from benchmarks.recipes import compare_recipes
from llm_train import TrainConfig
from llm_train.batch_warmup import micro_batches_at


def test_recipes_share_the_token_budget():
    module = compare_recipes
    base = TrainConfig(steps=50, lr=6e-3, warmup_steps=5, grad_accum_steps=2)
    per_step = 2048
    configs = module.variants(base, per_step)
    assert set(configs) == {"adamw", "lion", "adamw8bit", "wsd+anneal", "batch-warmup"}
    assert configs["lion"].lr == base.lr / 3 and configs["lion"].betas == (0.9, 0.99)
    ramp = configs["batch-warmup"]
    micro = per_step // 2
    tokens = 0
    for _ in range(ramp.steps):
        tokens += micro * micro_batches_at(tokens, micro, ramp)
    budget = base.steps * per_step
    assert budget <= tokens < budget + per_step  # the same tokens, to within the last step
    assert ramp.steps > base.steps  # smaller steps during the ramp: more of them
    for name in ("adamw", "lion", "adamw8bit", "wsd+anneal"):
        assert configs[name].steps == base.steps, name
