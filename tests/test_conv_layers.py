"""FIR resampling, equalized-lr conv, modulated conv and minibatch-std (gp3d.models.fir / layers)."""

import pytest
import torch
import torch.nn.functional as F

from gp3d.models.fir import conv2d_resample, downsample2d, fir_kernel, upsample2d
from gp3d.models.layers import Conv2dLayer, minibatch_std, modulated_conv2d


def test_fir_kernel_normalised():
    k = fir_kernel()
    assert k.shape == (4, 4)
    assert torch.allclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k[0], torch.tensor([1.0, 3.0, 3.0, 1.0]) / 64)


def test_fir_resampling_keeps_constants_away_from_border():
    x = torch.full((2, 3, 16, 16), 0.7)
    down, up = downsample2d(x, fir_kernel()), upsample2d(x, fir_kernel())
    assert down.shape == (2, 3, 8, 8) and up.shape == (2, 3, 32, 32)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(0.7))
    assert torch.allclose(up[..., 1:-1, 1:-1], torch.tensor(0.7))
    # Equalized-lr conv with a constant kernel: FIR downsampling adds no gain of its own.
    conv = Conv2dLayer(3, 1, 3, down=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    y = conv(x)
    assert y.shape == (2, 1, 8, 8)
    expected = 0.7 * 27 * conv.weight_gain
    assert torch.allclose(y[..., 1:-1, 1:-1], torch.tensor(expected), atol=1e-5)


def test_upsample_is_centred():
    x = torch.arange(4.0).view(1, 1, 4, 1).expand(1, 1, 4, 4)
    y = upsample2d(x, fir_kernel())[0, 0, :, 3]  # a column away from the left/right border
    assert torch.allclose(y[1:-1], torch.tensor([0.25, 0.75, 1.25, 1.75, 2.25, 2.75]))


@pytest.mark.parametrize("k", [1, 3])
def test_resampling_conv_matches_fir_then_conv_in_interior(k):
    torch.manual_seed(0)
    f = fir_kernel()
    x, w = torch.randn(2, 3, 8, 8), torch.randn(5, 3, k, k)
    up = conv2d_resample(x, w, f, up=2)
    ref_up = F.conv2d(upsample2d(x, f), w, padding=k // 2)
    down = conv2d_resample(x, w, f, down=2)
    ref_down = downsample2d(F.conv2d(x, w, padding=k // 2), f)
    assert up.shape == (2, 5, 16, 16) and down.shape == (2, 5, 4, 4)
    # Zero padding happens at a different stage, so only the 1-pixel border may differ.
    assert torch.allclose(up[..., 1:-1, 1:-1], ref_up[..., 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(down[..., 1:-1, 1:-1], ref_down[..., 1:-1, 1:-1], atol=1e-5)


def test_conv_layer_shapes_and_gain():
    torch.manual_seed(0)
    x = torch.randn(4, 16, 8, 8)
    assert Conv2dLayer(16, 8, 3, activation="lrelu")(x).shape == (4, 8, 8, 8)
    assert Conv2dLayer(16, 8, 3, up=2)(x).shape == (4, 8, 16, 16)
    assert Conv2dLayer(16, 8, 1, bias=False, down=2)(x).shape == (4, 8, 4, 4)
    # Equalized lr: unit-variance input -> roughly unit-variance linear output.
    y = Conv2dLayer(16, 64, 3)(x)[..., 1:-1, 1:-1]
    assert 0.7 < y.std().item() < 1.3
    assert Conv2dLayer(16, 8, 3, conv_clamp=0.1)(x * 100).abs().max() <= 0.1 + 1e-6


def test_modulated_conv_matches_per_sample_conv():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    y = modulated_conv2d(x, weight, styles, demodulate=True)
    for b in range(3):
        w = weight * styles[b].view(1, -1, 1, 1)
        w = w / w.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        assert torch.allclose(y[b : b + 1], F.conv2d(x[b : b + 1], w, padding=1), atol=1e-5)
    assert modulated_conv2d(x, weight, styles, up=2, fir=fir_kernel()).shape == (3, 5, 12, 12)


@pytest.mark.parametrize("batch", [8, 6, 5, 1])
def test_minibatch_std_any_batch(batch):
    x = torch.randn(batch, 4, 4, 4)
    y = minibatch_std(x, group_size=4, num_channels=1)
    assert y.shape == (batch, 5, 4, 4)
    assert torch.isfinite(y).all()
    assert torch.equal(y[:, :4], x)


def test_minibatch_std_groups_are_strided():
    x = torch.zeros(4, 2, 1, 1)
    x[1] = 1.0  # groups of 2 with stride 2: {0, 2} (std 0) and {1, 3} (std 0.5)
    y = minibatch_std(x, group_size=2)[:, 2, 0, 0]
    assert torch.allclose(y, torch.tensor([0.0, 0.5, 0.0, 0.5]), atol=1e-3)


def test_conv_double_backward():
    torch.manual_seed(0)
    layer = Conv2dLayer(3, 4, 3, activation="lrelu", down=2)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    (g,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    g.square().sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert layer.weight.grad.abs().sum() > 0
