import pytest
import torch

from llm_train.config import TrainConfig
from llm_train.parallel import apply_float8, check_float8_device, parallelize

torchao = pytest.importorskip("torchao", reason="torchao not installed (the [ao] extra)")


def test_conversion_swaps_eligible_linears_on_cpu(toy):
    from torchao.float8.float8_linear import Float8Linear

    torch.manual_seed(0)
    model = toy.Model(dropout=0.0)  # w1 16->32, w2 32->16, head 16->32: multiples of 16
    batch = toy.Loader().batch(0, 0)
    with torch.no_grad():
        exact = model(batch["input_ids"], labels=batch["labels"])["loss"].item()
    assert apply_float8(model, skip=("head",)) == 4
    names = {n for n, m in model.named_modules() if isinstance(m, Float8Linear)}
    assert names == {"blocks.0.w1", "blocks.0.w2", "blocks.1.w1", "blocks.1.w2"}
    assert type(model.head) is torch.nn.Linear
    # The swapped layers keep their weights (float8 is per matmul); torch emulates the float8
    # matmul on CPU, so the loss can be checked: close to the float32 one, not equal.
    loss = model(batch["input_ids"], labels=batch["labels"])["loss"]
    loss.backward()
    assert loss.item() == pytest.approx(exact, rel=0.05) and loss.item() != exact
    assert model.blocks[0].w1.weight.grad is not None


def test_dimensions_not_multiple_of_16_are_left_alone(toy):
    model = toy.Model()
    model.blocks[0].w2 = torch.nn.Linear(32, 24)
    apply_float8(model)
    assert type(model.blocks[0].w2) is torch.nn.Linear
    assert type(model.blocks[0].w1) is not torch.nn.Linear


def test_float8_needs_a_recent_cuda_gpu(toy):
    with pytest.raises(ValueError, match=r"compute capability >= 8\.9.*'cpu'"):
        check_float8_device("cpu")
    config = TrainConfig(steps=1, float8=True)
    model = toy.Model()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="float8=True"):
            parallelize(model, config)
        assert type(model.blocks[0].w1) is torch.nn.Linear  # nothing swapped before the error


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="needs a CUDA GPU with compute capability >= 8.9 (float8 tensor cores)",
)
def test_float8_trains_on_gpu(toy):
    model = toy.Model(dropout=0.0).cuda()
    parallelize(model, TrainConfig(steps=1, float8=True))
    batch = {k: v.cuda() for k, v in toy.Loader().batch(0, 0).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(batch["input_ids"], labels=batch["labels"])["loss"]
    loss.backward()
    assert torch.isfinite(loss)
