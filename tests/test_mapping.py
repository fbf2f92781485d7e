"""Mapping network (spec 1.1) and its use as D's conditioning mapper (spec 6.2, 6.4)."""

import pytest
import torch

from gp3d.models.mapping import MappingNetwork


def test_shapes_and_conditioning():
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=8, c_dim=3, w_dim=16, num_ws=5)
    z, c = torch.randn(4, 8), torch.eye(3)[[0, 1, 2, 0]]
    ws = m(z, c)
    assert ws.shape == (4, 5, 16)
    assert torch.equal(ws[:, 0], ws[:, 4])  # broadcast copies
    assert not torch.allclose(ws, m(z, torch.eye(3)[[1, 2, 0, 1]]))
    assert m.layers[0].weight.shape == (16, 8 + 16)  # [z, embed(c)] concatenated
    with pytest.raises(ValueError):
        m(z, None)


def test_default_sizes():
    m = MappingNetwork(z_dim=512, c_dim=1000, w_dim=512, num_ws=16)
    assert len(m.layers) == 2
    assert m.layers[0].weight.shape == (512, 1024)
    assert m.embed.weight.shape == (512, 1000)
    assert m.layers[0].weight_gain == pytest.approx(0.01 / 1024**0.5)


def test_conditioning_mapper_without_z():
    m = MappingNetwork(z_dim=0, c_dim=828, w_dim=32, num_ws=None, w_avg_beta=None)
    h = m(None, torch.rand(3, 828))
    assert h.shape == (3, 32)
    assert not hasattr(m, "w_avg")
    with pytest.raises(RuntimeError):
        m(None, torch.rand(3, 828), truncation_psi=0.5)


def test_w_avg_updates_only_with_update_emas():
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=8, c_dim=0, w_dim=16, num_ws=2, w_avg_beta=0.5)
    z = torch.randn(6, 8)
    m(z)
    assert torch.equal(m.w_avg, torch.zeros(16))
    with torch.no_grad():
        w = m(z, update_emas=True)[:, 0]
    assert torch.allclose(m.w_avg, 0.5 * w.mean(dim=0))


def test_truncation():
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=8, c_dim=0, w_dim=16, num_ws=3)
    with torch.no_grad():
        m.w_avg.normal_()
    z = torch.randn(4, 8)
    w0 = m(z, truncation_psi=0.0)
    assert torch.allclose(w0, m.w_avg.expand(4, 3, 16))
    w1, wh = m(z), m(z, truncation_psi=0.5)
    assert torch.allclose(wh, 0.5 * (w1 + m.w_avg), atol=1e-6)


def test_truncation_toward_a_given_centre_per_sample():
    """w_mean (e.g. the class-wise mean w, spec 8.3) replaces w_avg as the truncation centre."""
    m = MappingNetwork(z_dim=8, c_dim=3, w_dim=16, num_ws=3)
    z, c = torch.randn(2, 8), torch.eye(3)[[0, 2]]
    centre = torch.randn(2, 16)
    w = m(z, c)
    torch.testing.assert_close(m(z, c, 0.0, w_mean=centre), centre[:, None].expand(-1, 3, -1))
    torch.testing.assert_close(m(z, c, 0.5, w_mean=centre), torch.lerp(centre[:, None], w, 0.5))
    torch.testing.assert_close(m(z, c, 1.0, w_mean=centre), w)  # psi = 1: untouched
