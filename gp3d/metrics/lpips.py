"""LPIPS (Zhang et al. 2018) through torchmetrics' implementation, usable offline.

The distance has two parts: an ImageNet backbone (torchvision AlexNet / VGG16 / SqueezeNet
``features``) and the learned per-channel linear heads. torchmetrics ships the heads inside the
package (``torchmetrics/functional/image/lpips_models/<net>.pth``); the backbone comes from
torchvision's download into the torch hub cache. Here the backbone is built without weights and
then filled from (in order) a local file (``weights=``), the torch hub cache, or a download, so
an offline machine fails with a message that names the file to fetch instead of a socket error.
PTI uses the AlexNet variant for its losses (spec multiview_pti 1.5).
"""

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# torchvision constructor and weights enum behind each LPIPS backbone name.
_BACKBONES = {
    "alex": ("alexnet", "AlexNet_Weights"),
    "vgg": ("vgg16", "VGG16_Weights"),
    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights"),
}


class LPIPS(nn.Module):
    """Frozen LPIPS: two image batches [B, 3, H, W] in [-1, 1] -> distances [B].

    Images smaller than ``min_size`` on a side are bilinearly upsampled first: AlexNet's
    stride-4 stem and max-pools leave no spatial extent below ~32 pixels.
    """

    def __init__(self, inner: nn.Module, net: str, min_size: int = 64) -> None:
        super().__init__()
        self.inner, self.net, self.min_size = inner, net, min_size
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "LPIPS":  # always eval: no dropout in a loss
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS takes two [B, 3, H, W] batches, got {a.shape} and {b.shape}")
        if min(a.shape[-2:]) < self.min_size:
            scale = self.min_size / min(a.shape[-2:])
            size = [round(s * scale) for s in a.shape[-2:]]
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        return self.inner(a, b).reshape(a.shape[0])


def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _offline() -> bool:
    return any(
        os.environ.get(k, "") in ("1", "true", "TRUE") for k in ("HF_HUB_OFFLINE", "GP3D_OFFLINE")
    )


def backbone_state_dict(net: str, weights: str | os.PathLike | None = None) -> dict:
    """The torchvision backbone weights for ``net``: from ``weights``, the hub cache, or a
    download (skipped when HF_HUB_OFFLINE / GP3D_OFFLINE is set). Raises FileNotFoundError
    naming the expected file and how to get it."""
    import torchvision

    url = getattr(torchvision.models, _BACKBONES[net][1]).DEFAULT.url
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS backbone weights {path} do not exist; download {url} and pass its path"
            )
        return torch.load(path, map_location="cpu", weights_only=True)
    cached = _hub_file(url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    err: Exception | None = None
    if not _offline():
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
        except Exception as e:  # no network, proxy, ...
            err = e
    raise FileNotFoundError(
        f"LPIPS ({net}) needs the ImageNet backbone weights {cached.name}, which are not in the "
        f"torch hub cache ({cached.parent}) and cannot be downloaded here"
        f"{f' ({err})' if err else ' (offline)'}; fetch {url} on a machine with network, then "
        f"copy it to {cached} or pass its path (Python: weights=..., CLI: --lpips-weights FILE)"
    )


def _load_backbone(inner: nn.Module, net: str, state: dict) -> None:
    """Fill torchmetrics' sliced backbone (``inner.net.slice*``; each child is named by its
    index in torchvision's ``features``) from a torchvision state dict."""
    import torchvision

    model = getattr(torchvision.models, _BACKBONES[net][0])(weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"the LPIPS backbone weights are not a torchvision {_BACKBONES[net][0]} state dict: "
            f"{str(err).splitlines()[0]}"
        ) from err
    for sliced in inner.net.children():
        for idx, module in sliced.named_children():
            module.load_state_dict(model.features[int(idx)].state_dict())


def build_lpips(
    net: str = "alex", weights: str | os.PathLike | None = None, pretrained: bool = True
) -> LPIPS:
    """A frozen LPIPS module (see :class:`LPIPS`).

    Args:
        net: backbone, "alex" (PTI's choice), "vgg" or "squeeze".
        weights: a local torchvision backbone file (e.g. ``alexnet-owt-7be5be79.pth``); None =
            the torch hub cache, else a download.
        pretrained: False = random-init backbone (tests; never touches the network or disk).
            The linear heads always come from the file torchmetrics ships, so distances stay
            non-negative.
    """
    if net not in _BACKBONES:
        raise ValueError(f"unknown LPIPS network {net!r}; choose one of {sorted(_BACKBONES)}")
    from torchmetrics.functional.image.lpips import _LPIPS

    # pnet_rand=True: torchmetrics builds the backbone without weights (no download);
    # pretrained=True: it loads its bundled linear heads.
    inner = _LPIPS(pretrained=True, net=net, pnet_rand=True, use_dropout=True, eval_mode=True)
    if pretrained:
        _load_backbone(inner, net, backbone_state_dict(net, weights))
    return LPIPS(inner, net)
