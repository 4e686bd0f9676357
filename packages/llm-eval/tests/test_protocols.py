"""eval_mode: eval mode and no autograd inside, every submodule's own mode restored after."""

import pytest
import torch
from torch import nn

from llm_eval import eval_mode


@pytest.mark.parametrize("inference", [False, True])
def test_eval_mode_restores_each_submodule_and_disables_autograd(inference):
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a mixed state must come back as it was
    with eval_mode(model, inference=inference):
        assert not any(m.training for m in model.modules())
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled() == inference
        out = model(torch.ones(1, 2))
    assert [m.training for m in model.modules()] == [True, True, False]
    assert out.is_inference() == inference and torch.is_grad_enabled()
