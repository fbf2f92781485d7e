"""Gaussian-like blur of D inputs during the first kimg (spec 6.1), through kornia's filters."""

import math

import torch
from kornia.filters import gaussian_blur2d

# The original's taps exp2(-(x / s)^2) are a Gaussian exp(-x^2 / (2 sigma^2)) of
# sigma = s / sqrt(2 ln 2): kornia's kernel with that sigma is the same filter.
_EXP2_TO_SIGMA = 1.0 / math.sqrt(2.0 * math.log(2.0))


def _blur(x: torch.Tensor, radius: int, scale: float) -> torch.Tensor:
    size, sigma = 2 * radius + 1, scale * _EXP2_TO_SIGMA
    # "constant" = zero padding, like StyleGAN's filter2d; separable, like the original.
    return gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="constant")


def blur_images(x: torch.Tensor, sigma: float, depth_scale: float | None = 30.0) -> torch.Tensor:
    """Blur all channels with taps exp2(-(x/sigma)^2) over [-floor(3 sigma), floor(3 sigma)].

    With 4 channels and ``depth_scale``, channel 3 (depth) additionally gets the original's extra
    near-box blur with the same support but a fixed scale of 30 (spec 6.1 step 2, P6). No-op once
    floor(3 sigma) = 0. Zero padding, like StyleGAN's filter2d.
    """
    radius = math.floor(sigma * 3)
    if radius == 0:
        return x
    x = _blur(x, radius, sigma)
    if depth_scale is not None and x.shape[1] == 4:
        x = torch.cat([x[:, :3], _blur(x[:, 3:], radius, depth_scale)], dim=1)
    return x
