"""Gaussian-like blur of D inputs during the first kimg (spec 6.1)."""

import math

import torch
import torch.nn.functional as F


def _taps(sigma: float, scale: float, device, dtype) -> torch.Tensor:
    radius = math.floor(sigma * 3)
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    f = torch.exp2(-(x / scale).square())
    return f / f.sum()


def _separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    c, r = x.shape[1], taps.numel() // 2
    kx = taps.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = taps.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0)), kx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r)), ky, groups=c)


def blur_images(x: torch.Tensor, sigma: float, depth_scale: float | None = 30.0) -> torch.Tensor:
    """Blur all channels with taps exp2(-(x/sigma)^2) over [-floor(3 sigma), floor(3 sigma)].

    With 4 channels and ``depth_scale``, channel 3 (depth) additionally gets the original's extra
    near-box blur with the same support but a fixed scale of 30 (spec 6.1 step 2, P6). No-op once
    floor(3 sigma) = 0. Zero padding, like StyleGAN's filter2d.
    """
    if math.floor(sigma * 3) == 0:
        return x
    x = _separable(x, _taps(sigma, sigma, x.device, x.dtype))
    if depth_scale is not None and x.shape[1] == 4:
        depth = _separable(x[:, 3:], _taps(sigma, depth_scale, x.device, x.dtype))
        x = torch.cat([x[:, :3], depth], dim=1)
    return x
