"""Tri-plane synthesis network (spec 1.2, 14.1)."""

import pytest
import torch

from gp3d.models.synthesis import TriPlaneSynthesis


def tiny(**kwargs) -> TriPlaneSynthesis:
    return TriPlaneSynthesis(
        w_dim=16, plane_resolution=16, plane_channels=4, channel_base=256, channel_max=32, **kwargs
    )


def test_spec_numbers_without_building():
    assert TriPlaneSynthesis.count_ws(512) == 16
    assert TriPlaneSynthesis.channel_table(512) == {
        4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64
    }  # fmt: skip
    big = TriPlaneSynthesis.channel_table(512, channel_base=65536, channel_max=1024)
    assert (big[64], big[128], big[256], big[512]) == (1024, 512, 256, 128)
    with pytest.raises(ValueError):
        TriPlaneSynthesis.channel_table(48)


def test_shapes_and_structure():
    torch.manual_seed(0)
    net = tiny()
    assert net.num_ws == TriPlaneSynthesis.count_ws(16) == 6
    assert list(net.blocks) == ["b4", "b8", "b16"]
    assert net.blocks["b16"].conv1.weight.shape == (16, 16, 3, 3)  # min(256 // 16, 32)
    assert net.blocks["b4"].torgb.weight.shape == (12, 32, 1, 1)  # 3 * plane_channels outputs
    planes = net(torch.randn(2, net.num_ws, 16))
    assert planes.shape == (2, 3, 4, 16, 16)
    with pytest.raises(ValueError):
        net(torch.randn(2, net.num_ws - 1, 16))


def test_planes_are_channel_chunks():
    torch.manual_seed(0)
    net = tiny()
    ws = torch.randn(1, net.num_ws, 16)
    x = img = None
    for i, block in enumerate(net.blocks.values()):  # ws slices: [0:2], [1:4], [3:6]
        start = 0 if i == 0 else 2 * i - 1
        x, img = block(x, img, ws[:, start : start + block.num_conv + 1], "const")
    assert img.shape == (1, 12, 16, 16)
    assert torch.allclose(net(ws, noise_mode="const")[0, 1], img[0, 4:8])  # plane 1 = channels 4..7


def test_noise_modes():
    torch.manual_seed(0)
    net = tiny()
    for name, p in net.named_parameters():
        if name.endswith("noise_strength"):
            p.data.fill_(0.5)
    ws = torch.randn(2, net.num_ws, 16)
    assert torch.equal(net(ws, noise_mode="const"), net(ws, noise_mode="const"))
    assert not torch.equal(net(ws, noise_mode="random"), net(ws, noise_mode="random"))
    assert not torch.allclose(net(ws, noise_mode="none"), net(ws, noise_mode="const"))
    with pytest.raises(ValueError):
        net(ws, noise_mode="fixed")
    assert "blocks.b16.conv1.noise_const" in net.state_dict()  # const noise survives checkpoints


def test_gradients_reach_everything():
    torch.manual_seed(0)
    net = tiny(use_noise=True)
    ws = torch.randn(2, net.num_ws, 16, requires_grad=True)
    net(ws).square().mean().backward()
    assert net.blocks["b4"].const.grad.abs().sum() > 0
    assert ws.grad.abs().sum(dim=(0, 2)).gt(0).all()  # every style is used
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
