"""Compositing maths by hand (spec 2.5): density activation, deltas, alpha, transmittance and the
weighted sums, on rays short enough to compute on paper."""

import math

import torch
import torch.nn.functional as F

from gp3d.models.compositing import composite, density_activation, transmittance


def test_density_is_softplus_of_the_raw_output():
    raw = torch.tensor([-30.0, -1.0, 0.0, 2.0, 30.0])
    sigma = density_activation(raw)
    torch.testing.assert_close(sigma, torch.log1p(torch.exp(raw)))
    assert abs(sigma[2].item() - math.log(2.0)) < 1e-7
    assert (sigma >= 0).all()


def test_cut_quantile_zeroes_only_the_densities_below_it():
    # softplus is monotone, so the 0.5 quantile of five densities is the middle one: it stays,
    # the two below it go to zero, the two above it are untouched (spec 2.5, NFS's cut_quantile)
    raw = torch.tensor([3.0, -2.0, 0.5, 1.0, -1.0]).reshape(1, 5, 1)  # median raw = 0.5
    sigma = density_activation(raw, cut_quantile=0.5)
    full = F.softplus(raw)
    keep = raw >= 0.5
    torch.testing.assert_close(sigma[keep], full[keep])
    assert (sigma[~keep] == 0).all()
    assert sigma.shape == raw.shape


def test_three_sample_ray_by_hand():
    # t = 1, 2, 4 -> deltas 1, 2, 1e10 (spec 2.5: the last delta is infinite)
    t = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    s0, s1, s2 = 0.5, 0.25, 0.1
    sigma = torch.tensor([[[s0], [s1], [s2]]], dtype=torch.float64)
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    a0, a1, a2 = 1 - math.exp(-s0 * 1), 1 - math.exp(-s1 * 2), 1.0
    t0, t1 = 1.0, (1 - a0 + 1e-10)
    t2 = t1 * (1 - a1 + 1e-10)
    w = torch.tensor([[a0 * t0, a1 * t1, a2 * t2]], dtype=torch.float64)

    alpha, trans = transmittance(sigma, t)
    torch.testing.assert_close(alpha, torch.tensor([[a0, a1, a2]], dtype=torch.float64))
    torch.testing.assert_close(trans, torch.tensor([[t0, t1, t2]], dtype=torch.float64))

    out_rgb, depth, opacity, weights = composite(rgb, sigma, t)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(out_rgb, w)  # one-hot colours: each channel is one weight
    torch.testing.assert_close(depth, (w * t).sum(-1, keepdim=True))
    torch.testing.assert_close(opacity, w.sum(-1, keepdim=True))
    assert abs(opacity.item() - 1.0) < 1e-9  # no division by the sum: it is 1 by construction


def test_an_opaque_sample_leaves_the_original_1e_10_behind_it():
    # T_1 = 1 - alpha_0 + 1e-10 with alpha_0 = 1 (spec 2.5): exactly 1e-10, not 0 or negative
    sigma = torch.tensor([[[1e6], [1.0], [1.0]]], dtype=torch.float64)
    _, trans = transmittance(sigma, torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64))
    assert abs(trans[0, 1].item() / 1e-10 - 1) < 1e-6
    assert abs(trans[0, 2].item() / (1e-10 * (math.exp(-1.0) + 1e-10)) - 1) < 1e-6


def test_deltas_come_from_deltas_t_and_depth_from_t():
    # The coarse pass (spec 2.4 quirk) takes alpha from s-space deltas but depth from metric t.
    t = torch.tensor([[0.75, 0.8, 0.9, 1.0]])
    s = (t - 0.75) / 0.5  # s-space: every delta is twice the metric one
    sigma = torch.full((1, 4, 1), 3.0)
    rgb = torch.rand(1, 4, 3)
    *_, w_metric = composite(rgb, sigma, t)
    out_rgb, depth, opacity, w_s = composite(rgb, sigma, t, deltas_t=s)
    alpha_s, trans_s = transmittance(sigma, s)
    torch.testing.assert_close(w_s, alpha_s * trans_s)
    assert not torch.allclose(w_s, w_metric)
    # doubling every delta = doubling the density (spec 2.4)
    *_, w_double = composite(rgb, 2 * sigma, t)
    torch.testing.assert_close(w_s, w_double)
    torch.testing.assert_close(depth, (w_s * t).sum(-1, keepdim=True))
    torch.testing.assert_close(out_rgb, (w_s[..., None] * rgb).sum(-2))
    torch.testing.assert_close(opacity, w_s.sum(-1, keepdim=True))
