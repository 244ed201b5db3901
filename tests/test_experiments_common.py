"""eval_mode: eval mode inside the block, the previous train/eval flag back after it."""

from __future__ import annotations

import pytest
from torch import nn

from cutslots.experiments.common import eval_mode


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(2)))


@pytest.mark.parametrize("training", [True, False])
def test_eval_inside_and_previous_flag_restored(training: bool) -> None:
    model = _model().train(training)
    with eval_mode(model) as inside:
        assert inside is model
        assert not any(m.training for m in model.modules())
    assert all(m.training == training for m in model.modules())


def test_flag_restored_when_the_block_raises() -> None:
    model = _model().train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert all(m.training for m in model.modules())
