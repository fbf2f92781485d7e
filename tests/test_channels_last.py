"""``model.module.channels_last``: D in channels-last memory format computes the same logits,
input gradients (R1) and weight gradients as in the default format, and really runs NHWC."""

import copy

import torch

from gp3d.models.discriminator import Discriminator
from gp3d.training.losses import r1_penalty

CL = torch.channels_last


def _run(d: Discriminator, x: torch.Tensor, patch: torch.Tensor, fmt) -> tuple:
    x = x.detach().contiguous(memory_format=fmt).requires_grad_(True)
    out = d(x, patch)
    r1 = r1_penalty(out.logits, x, gamma=1.0)
    (r1 + out.logits.mean()).backward()
    grads = {n: p.grad.clone() for n, p in d.named_parameters() if p.grad is not None}
    return out.logits.detach(), r1.detach(), grads


def test_channels_last_discriminator_matches_default_format():
    torch.manual_seed(0)
    d = Discriminator(
        img_resolution=32, patch_resolution=16, in_channels=4, channel_base=128, channel_max=16
    )
    d_cl = copy.deepcopy(d).to(memory_format=CL)
    conv = next(p for p in d_cl.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=CL) and not conv.is_contiguous()
    x, patch = torch.randn(4, 4, 16, 16), torch.tensor([[0.5, 0.1, -0.2]]).expand(4, 3)
    ref, ours = _run(d, x, patch, torch.contiguous_format), _run(d_cl, x, patch, CL)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-6)
    assert ours[2].keys() == ref[2].keys()
    for name in ref[2]:  # float summation order differs between the layouts' kernels
        torch.testing.assert_close(ours[2][name], ref[2][name], rtol=1e-4, atol=1e-6, msg=name)
