"""The LeReS depth network (Yin et al., CVPR 2021; AdelaiDepth's ``res101.pth``): what the
original 3DGP ran on ImageNet (spec 5.1).

Encoder: ResNeXt-101 32x8d (timm ``resnext101_32x8d``: the same layer names and shapes as the
release's torchvision-style encoder, no classifier); its four stages (1/4 .. 1/32, 256 .. 2048
channels) feed a top-down decoder:

- ``conv``: a feature-transfer block (FTB) 2048 -> 512 on the 1/32 features, ``conv1`` 512 -> 256,
  2x up;
- ``ffm2``, ``ffm1``, ``ffm0``: feature-fusion blocks: FTB(stage features) + the upper path, FTB,
  2x up (1/16 -> 1/8 -> 1/4 -> 1/2), 256 channels;
- ``outconv``: 3x3 256 -> 128, BN, ReLU, 3x3 128 -> 1, 2x up to the input size.

Every 2x up-sampling is bilinear with ``align_corners=True``, as in the release. In the release's
FTB, the residual branch opens with an in-place ReLU that also rectifies the tensor it is added
to, so the block computes ``relu(y + branch(y))`` with ``y = relu(conv1(x))``; this module does
so explicitly. Parameter names follow the release once its prefix is mapped
(:func:`from_release_keys`), so its checkpoint loads strictly.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_CHANNELS = (256, 512, 1024, 2048)  # ResNeXt-101 stages 1..4
DECODER_CHANNELS = (256, 256, 256, 512)  # the decoder's width at each of those levels
# Key prefixes of the release's ``depth_model`` state dict (after an optional ``module.``, which
# DataParallel training adds) -> this module's.
RELEASE_PREFIXES = {
    "depth_model.encoder_modules.encoder.": "encoder.",
    "depth_model.decoder_modules.": "decoder.",
}
DATA_PARALLEL_PREFIX = "module."


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class FeatureTransfer(nn.Module):
    """LeReS's FTB: ``y = relu(conv1(x))``; ``relu(y + conv(bn(conv(y))))`` (3x3 convs)."""

    def __init__(self, cin: int, cmid: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cmid)
        # Sequential indices 1, 2, 4 carry the release's parameter names; 0 and 3 are its ReLUs.
        self.conv_branch = nn.Sequential(
            nn.ReLU(), _conv3x3(cmid, cmid), nn.BatchNorm2d(cmid), nn.ReLU(), _conv3x3(cmid, cmid)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x))
        return F.relu(y + self.conv_branch(y))


class FeatureFusion(nn.Module):
    """LeReS's FFM: ``up2(ftb2(ftb1(low) + high))``."""

    def __init__(self, cin: int, cmid: int, cout: int) -> None:
        super().__init__()
        self.ftb1 = FeatureTransfer(cin, cmid)
        self.ftb2 = FeatureTransfer(cmid, cout)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return _up2(self.ftb2(self.ftb1(low) + high))


class AdaptiveOutput(nn.Module):
    """LeReS's AO head: 3x3 conv, BN, ReLU, 3x3 conv to one channel, 2x up."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.adapt_conv = nn.Sequential(
            _conv3x3(cin, cin // 2), nn.BatchNorm2d(cin // 2), nn.ReLU(), _conv3x3(cin // 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _up2(self.adapt_conv(x))


class LeReSDecoder(nn.Module):
    """Top-down decoder: encoder stages (1/4 .. 1/32) -> one depth channel at the input size."""

    def __init__(self) -> None:
        super().__init__()
        cin, cmid = ENCODER_CHANNELS, DECODER_CHANNELS
        self.conv = FeatureTransfer(cin[3], cmid[3])
        self.conv1 = _conv3x3(cmid[3], cmid[2])
        self.ffm2 = FeatureFusion(cin[2], cmid[2], cmid[2])
        self.ffm1 = FeatureFusion(cin[1], cmid[1], cmid[1])
        self.ffm0 = FeatureFusion(cin[0], cmid[0], cmid[0])
        self.outconv = AdaptiveOutput(cmid[0])
        for m in self.modules():  # the release's init (only matters for random-weight tests)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = _up2(self.conv1(self.conv(features[3])))  # 1/32 -> 1/16
        x = self.ffm2(features[2], x)  # -> 1/8
        x = self.ffm1(features[1], x)  # -> 1/4
        x = self.ffm0(features[0], x)  # -> 1/2
        return self.outconv(x)  # -> 1/1


class LeReSDepthNet(nn.Module):
    """ResNeXt-101 32x8d + the LeReS decoder: ``[B, 3, S, S]`` (S a multiple of 32) -> the raw
    affine-invariant depth ``[B, 1, S, S]`` (larger = farther, unknown shift)."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model(
            "resnext101_32x8d", pretrained=False, num_classes=0, global_pool=""
        )
        self.decoder = LeReSDecoder()

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        e = self.encoder
        x = e.maxpool(e.act1(e.bn1(e.conv1(x))))
        features = []
        for layer in (e.layer1, e.layer2, e.layer3, e.layer4):
            x = layer(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"LeReS input sides must be multiples of 32, got {tuple(x.shape)}")
        return self.decoder(self.stages(x))


def from_release_keys(state: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """The release's ``depth_model`` state dict (``module.`` prefixed or not) -> this module's
    keys. Keys under neither known prefix are kept, so a strict load names them."""
    if state and all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in state.items()}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        for old, new in RELEASE_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def to_release_keys(state: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Inverse of :func:`from_release_keys` with the ``module.`` prefix the release carries
    (used to write checkpoints in the release's layout, e.g. in tests)."""
    back = {new: old for old, new in RELEASE_PREFIXES.items()}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        prefix = next(p for p in back if key.startswith(p))
        out[DATA_PARALLEL_PREFIX + back[prefix] + key[len(prefix) :]] = value
    return out
