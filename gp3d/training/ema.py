"""Exponential moving average of the generator's weights (spec 7.5)."""

import copy

import torch
from torch import nn


def make_ema_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy in eval mode, used for sampling and metrics."""
    ema = copy.deepcopy(module).eval()
    ema.requires_grad_(False)
    return ema


def ema_update(ema: nn.Module, module: nn.Module, beta: float) -> None:
    """p_ema <- lerp(p, p_ema, beta); buffers (w_avg, schedule progress, ...) copied verbatim."""
    # no_grad as a block, not a decorator: mutation testers skip decorated functions
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), module.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(ema.buffers(), module.buffers()):
            b_ema.copy_(b)
