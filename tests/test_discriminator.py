"""Patch-conditioned ResNet discriminator with the KD head (spec 6, 7.1, 14.1)."""

import pytest
import torch

from gp3d.models.discriminator import Discriminator
from gp3d.models.scalar_encoder import ScalarEncoder1d


def tiny(**kwargs) -> Discriminator:
    kw = dict(
        img_resolution=32, patch_resolution=16, channel_base=128, channel_max=16, hyper_w_dim=8
    )
    return Discriminator(**{**kw, **kwargs})


def test_default_channel_table():
    assert Discriminator.channel_table(256, 64) == [
        (256, 128, 256, 1),
        (128, 256, 512, 1),
        (64, 512, 512, 2),
        (32, 512, 512, 2),
        (16, 512, 512, 2),
        (8, 512, 512, 2),
    ]
    big = Discriminator.channel_table(256, 64, channel_base=65536, channel_max=1024)
    assert [(t, o) for _, t, o, _ in big[:3]] == [(256, 512), (512, 1024), (1024, 1024)]


def test_patch_embedding():
    enc = ScalarEncoder1d()
    assert enc.out_dim == 828 and enc.embedding.weight.shape == (1001, 256)
    e = enc(torch.tensor([[1.0, 0.0, 0.25], [0.5, 0.5, 0.0]]))
    assert e.shape == (2, 828)
    assert torch.allclose(
        e[0, 20:276], enc.embedding.weight[1000]
    )  # [sin, cos, emb(round(1000 s))]
    assert torch.allclose(e[0, 276 : 276 + 10], torch.zeros(10))  # sin(0)


def test_default_sizes():
    d = Discriminator(img_resolution=256, patch_resolution=64, in_channels=4, kd_dim=2048)
    assert [p.shape for p in d.kd_head.parameters()] == [(512, 8192), (512,), (2048, 512), (2048,)]
    assert d.cmap_dim == 512 and d.head_mapping.embed.weight.shape == (512, 828)
    assert d.hyper_mapping.layers[-1].weight.shape == (512, 512)
    assert d.blocks["b256"].fromrgb.weight.shape == (128, 4, 1, 1)
    assert d.blocks["b128"].fromrgb is None  # no dead fromRGB layers
    assert d.blocks["b64"].hyper.weight.shape == (512, 512)  # FC(h -> tmp channels of conv1)
    assert d.blocks["b64"].conv0.weight.shape == (512, 512, 3, 3)


@pytest.mark.parametrize("in_channels", [3, 4])
def test_shapes(in_channels):
    torch.manual_seed(0)
    d = tiny(in_channels=in_channels, c_dim=5, kd_dim=7)
    x, patch = torch.randn(6, in_channels, 16, 16), torch.rand(6, 3)
    logits, kd, _ = d(x, patch, torch.eye(5)[[0, 1, 2, 3, 4, 0]])
    assert logits.shape == (6,) and kd.shape == (6, 7)
    with pytest.raises(ValueError):
        d(x, patch, None)  # class-conditional D needs c


def test_variants_and_batches():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 16, 16)  # 5: not divisible by the mbstd group size
    logits, kd, _ = tiny(patch_cond=False)(x)
    assert logits.shape == (5,) and kd is None
    d = tiny(hyper_mod=False)
    assert d.hyper_mapping is None and d.blocks["b32"].hyper is None
    assert tiny()(x[:1])[0].shape == (1,)
    # Patch parameters change the logits; None means the full image.
    d = tiny()
    full = torch.tensor([[1.0, 0.0, 0.0]]).expand(5, 3)
    assert torch.allclose(d(x)[0], d(x, full)[0])
    assert not torch.allclose(d(x, full)[0], d(x, torch.tensor([[0.5, 0.25, 0.0]]).expand(5, 3))[0])


def test_r1_double_backward():
    torch.manual_seed(0)
    d = tiny(in_channels=4, c_dim=3, kd_dim=4)
    x = torch.randn(4, 4, 16, 16, requires_grad=True)
    logits, _, _ = d(x, torch.rand(4, 3), torch.eye(3)[[0, 1, 2, 0]])
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grad.square().sum().backward()
    grads = {n: p.grad for n, p in d.named_parameters()}
    assert grads["blocks.b32.fromrgb.weight"].abs().sum() > 0
    assert grads["blocks.b16.hyper.weight"].abs().sum() > 0
    assert grads["head_mapping.embed.weight"].abs().sum() > 0
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
