"""kornia replaces hand-written filters (issue 16 item 4): the replacements give the old code's
values. The old implementations are kept here, verbatim, as the references."""

import math

import pytest
import torch
import torch.nn.functional as F

from data_prep.synthetic.depth import _gaussian_blur
from gp3d.training.blur import blur_images


def _old_taps(sigma: float, scale: float, device, dtype) -> torch.Tensor:
    radius = math.floor(sigma * 3)
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    f = torch.exp2(-(x / scale).square())
    return f / f.sum()


def _old_separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    c, r = x.shape[1], taps.numel() // 2
    kx = taps.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = taps.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0)), kx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r)), ky, groups=c)


def _old_blur_images(x, sigma, depth_scale=30.0):
    if math.floor(sigma * 3) == 0:
        return x
    x = _old_separable(x, _old_taps(sigma, sigma, x.device, x.dtype))
    if depth_scale is not None and x.shape[1] == 4:
        depth = _old_separable(x[:, 3:], _old_taps(sigma, depth_scale, x.device, x.dtype))
        x = torch.cat([x[:, :3], depth], dim=1)
    return x


@pytest.mark.parametrize("sigma", [0.34, 1.0, 2.5, 10.0])
@pytest.mark.parametrize("channels,depth_scale", [(3, 30.0), (4, 30.0), (4, None)])
def test_d_input_blur_matches_the_hand_written_one(sigma, channels, depth_scale):
    x = torch.randn(2, channels, 40, 40, generator=torch.Generator().manual_seed(0))
    new, old = blur_images(x, sigma, depth_scale), _old_blur_images(x, sigma, depth_scale)
    assert new.shape == old.shape
    torch.testing.assert_close(new, old, rtol=0, atol=2e-6)
    x64 = x.double()  # the remaining difference is float32 rounding (exp vs exp2 taps)
    torch.testing.assert_close(
        blur_images(x64, sigma, depth_scale), _old_blur_images(x64, sigma, depth_scale),
        rtol=0, atol=1e-12,
    )  # fmt: skip


def test_blur_is_a_noop_below_one_tap():
    x = torch.randn(1, 4, 8, 8)
    assert blur_images(x, 0.33) is x


def _old_synthetic_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.7])
def test_synthetic_depth_blur_matches_the_hand_written_one(sigma):
    x = torch.rand(3, 1, 33, 29, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_gaussian_blur(x, sigma), _old_synthetic_blur(x, sigma),
                               rtol=0, atol=1e-6)  # fmt: skip
    # 16-bit depth PNGs quantise at 1/60000: the float32 differences are far below a step
    assert (_gaussian_blur(x, sigma) - _old_synthetic_blur(x, sigma)).abs().max() < 1 / 60000 / 50
