"""LeReS as a depth estimator (``--model leres``): the original 3DGP's choice (spec 5.1).

Why our own network (``data_prep/depth/leres_net.py``) rather than a package: the maintained pip
port (controlnet-aux's ``LeresDetector``) imports every ControlNet annotator on import, always
loads a second (pix2pix) network that parses ``sys.argv``, returns an 8-bit inverted
visualisation, and feeds the network BGR values not divided by 255, unlike the release's
``test_depth.py``. The network is ~150 lines on top of timm's ResNeXt-101 (already a dependency);
a test checks that a checkpoint in the release's key layout loads strictly.

Weights: the release's ``res101.pth`` (AdelaiDepth; a dict whose ``depth_model`` entry is the
state dict, keys prefixed ``module.``). ``--depth-weights PATH`` names a local copy; without it the
file is fetched once from the Hugging Face hub (``lllyasviel/Annotators``, the copy controlnet-aux
uses; cached in the HF cache, ``HF_HUB_OFFLINE=1`` uses the cache only).

Pre- and post-processing, as the release's ``test_depth.py``: the RGB image is resized to
448 x 448 (``cv2.resize``, bilinear, aspect ratio not kept), scaled to [0, 1] and normalised with
the ImageNet mean / std; the prediction is shifted so its minimum is 0.01 (``inference``: ``depth -
min + 0.01``) and resized bilinearly back to the image size. It is *depth* (larger = farther), so
it is stored as is, scaled to a maximum of 60000 like the release's dumps (``--max-ratio`` defaults
to no floor for LeReS; ``data_prep/depth/convert.py``).
"""

import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from data_prep.depth.leres_net import LeReSDepthNet, from_release_keys
from gp3d.data.format import file_sha256  # noqa: F401 (model.py: leres.file_sha256)

LERES = "leres"  # --model value
WEIGHTS_FILE = "res101.pth"
HUB_REPO = "lllyasviel/Annotators"  # hosts the release's res101.pth (controlnet-aux's source)
INPUT_SIZE = 448  # the release's test resolution
MIN_DEPTH = 0.01  # the release's inference shift: depth - min + 0.01
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class LeReSWeightsError(RuntimeError):
    """The LeReS weights cannot be found or read (the message names the file and the flag)."""


def add_leres_arguments(parser) -> None:
    """The LeReS options shared by estimate_depth and predict_depth (``--depth-weights``,
    ``--input-size``)."""
    parser.add_argument("--depth-weights", metavar="PATH",
                        help=f"--model leres: local {WEIGHTS_FILE} (default: hub download)")  # fmt: skip
    parser.add_argument("--input-size", type=int,
                        help=f"--model leres: square input side (default {INPUT_SIZE}, the release's)")  # fmt: skip


def weights_path(weights: str | None) -> Path:
    """The ``res101.pth`` to load: ``weights`` if given, else the hub copy (downloaded once)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise LeReSWeightsError(
                f"LeReS weights file {path} not found: pass the AdelaiDepth {WEIGHTS_FILE} "
                "with --depth-weights PATH"
            )
        return path.resolve()
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(HUB_REPO, WEIGHTS_FILE))
    except Exception as err:  # offline, hub errors: many types
        raise LeReSWeightsError(
            f"cannot fetch LeReS weights {WEIGHTS_FILE} from huggingface.co/{HUB_REPO} "
            f"({type(err).__name__}); offline? download {WEIGHTS_FILE} elsewhere and pass "
            "--depth-weights PATH"
        ) from err


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The network's state dict (our keys) from a release checkpoint or a bare state dict."""
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # Old training checkpoints may pickle more than tensors; the file is the one the user
            # named (or the hub copy), so it is trusted as the release's own loader does.
            print(f"note: {path} is not a weights-only file; loading it fully", file=sys.stderr)
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LeReSWeightsError(f"cannot read LeReS weights {path}: {first}") from err
    if isinstance(ckpt, dict) and isinstance(ckpt.get("depth_model"), dict):
        ckpt = ckpt["depth_model"]
    if not isinstance(ckpt, dict):
        raise LeReSWeightsError(f"{path} holds no state dict (expected the release's res101.pth)")
    return from_release_keys(ckpt)


def load_weights(net: LeReSDepthNet, path: Path) -> None:
    try:
        net.load_state_dict(read_checkpoint(path), strict=True)
    except RuntimeError as err:
        if isinstance(err, LeReSWeightsError):
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LeReSWeightsError(
            f"{path} is not a LeReS ResNeXt-101 checkpoint (the AdelaiDepth {WEIGHTS_FILE}): "
            f"{first}"
        ) from err


class LeReSProcessor:
    """Image -> network input, with the call signature of a transformers image processor."""

    do_pad = False

    def __init__(self, size: int = INPUT_SIZE) -> None:
        if size < 32 or size % 32:
            raise ValueError(f"LeReS input size must be a multiple of 32, got {size}")
        self.size = size

    def __call__(self, images: Image.Image, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        import cv2

        rgb = np.asarray(images.convert("RGB"))
        rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        x = (rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return {"pixel_values": torch.from_numpy(x.transpose(2, 0, 1).copy())[None]}


class LeReSEstimator(torch.nn.Module):
    """:class:`LeReSDepthNet` with the output of a transformers depth model:
    ``forward(pixel_values=x).predicted_depth`` is ``[B, S, S]``, each map shifted so its minimum
    is 0.01 (the release's ``inference``), in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.net = LeReSDepthNet()
        self.config = SimpleNamespace(model_type=LERES)

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        depth = self.net(pixel_values)[:, 0].float()
        low = depth.flatten(1).amin(1)[:, None, None]
        return SimpleNamespace(predicted_depth=depth - low + MIN_DEPTH)
