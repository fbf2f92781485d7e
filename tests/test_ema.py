"""The generator EMA (spec 7.5): one update step checked by hand."""

import torch
from torch import nn

from gp3d.training.ema import ema_update, make_ema_copy


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.register_buffer("w_avg", torch.zeros(2))


def _set(net: _Net, w: list[float], b: float, w_avg: list[float]) -> None:
    with torch.no_grad():
        net.lin.weight.copy_(torch.tensor([w]))
        net.lin.bias.fill_(b)
        net.w_avg.copy_(torch.tensor(w_avg))


def test_one_ema_step_by_hand():
    net = _Net()
    _set(net, [1.0, -2.0], 4.0, [0.0, 0.0])
    ema = make_ema_copy(net)
    _set(net, [3.0, 2.0], 0.0, [5.0, -1.0])  # the trained weights move on
    ema_update(ema, net, beta=0.75)
    # p_ema <- beta * p_ema + (1 - beta) * p: 0.75 * 1 + 0.25 * 3 = 1.5, 0.75 * -2 + 0.25 * 2 = -1
    torch.testing.assert_close(ema.lin.weight, torch.tensor([[1.5, -1.0]]))
    torch.testing.assert_close(ema.lin.bias, torch.tensor([3.0]))  # 0.75 * 4 + 0.25 * 0
    torch.testing.assert_close(ema.w_avg, torch.tensor([5.0, -1.0]))  # buffers copied verbatim
    torch.testing.assert_close(net.lin.weight, torch.tensor([[3.0, 2.0]]))  # source untouched
    ema_update(ema, net, beta=0.0)
    torch.testing.assert_close(ema.lin.weight, net.lin.weight)


def test_ema_copy_is_frozen_independent_and_in_eval():
    net = _Net().train()
    ema = make_ema_copy(net)
    assert not ema.training and net.training
    assert not any(p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        net.lin.weight.add_(1.0)
    assert not torch.equal(ema.lin.weight, net.lin.weight)  # a copy, not shared storage
