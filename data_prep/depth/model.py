"""A transformers monocular depth estimator (Depth-Anything, DPT/MiDaS, ZoeDepth, ...).

``source`` names the network:

- a hub id, e.g. ``depth-anything/Depth-Anything-V2-Small-hf`` (relative, predicts disparity)
  or ``depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf`` (metric depth): loaded with
  ``AutoModelForDepthEstimation`` / ``AutoImageProcessor`` (downloads once; offline machines
  set ``HF_HUB_OFFLINE=1`` and use the cache or a local folder);
- a local folder with ``config.json``, the weights and ``preprocessor_config.json`` (what
  ``save_pretrained`` writes, or a downloaded hub snapshot);
- ``random:<preset>`` or ``random:<config.json>``: the architecture with seeded random weights.
  For tests only: the maps mean nothing. Presets: ``depth-anything-tiny``, ``dpt-tiny``;
- ``leres``: LeReS ResNeXt-101, the original 3DGP's estimator (``data_prep/depth/leres.py``:
  weights from ``weights`` or the hub, its own pre- and post-processing); ``random:leres`` is
  that architecture with seeded random weights (tests).

Preprocessing is the model's own image processor (resize keeping the aspect ratio where it
does, normalisation); the prediction is resized back to the image's size bilinearly. ZoeDepth's
processor reflect-pads the image first; that border is cut off again (as its
``post_process_depth_estimation`` does), so the map stays aligned with the image.
"""

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data_prep.depth.convert import DEPTH, PREDICTION_KINDS, infer_prediction_kind
from data_prep.depth.leres import LERES
from data_prep.features.teacher import resolve_device

RANDOM_PREFIX = "random:"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class DepthModelError(RuntimeError):
    """The depth network cannot be built or loaded (message says how to fix it)."""


def input_padding(processor, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) the processor adds on each side of an ``height x width`` image before
    resizing it, so the prediction covers them too. ZoeDepth reflect-pads
    ``int(sqrt(side / 2) * 3)`` (transformers' ``ZoeDepthImageProcessor``); other padding (DPT's
    ``size_divisor`` centring after the resize) cannot be undone here and is refused."""
    if not getattr(processor, "do_pad", False):
        return 0, 0
    if type(processor).__name__.startswith("ZoeDepthImageProcessor"):
        return int(math.sqrt(height / 2) * 3), int(math.sqrt(width / 2) * 3)
    raise DepthModelError(
        f"{type(processor).__name__} pads its inputs (do_pad=True), which would misalign the "
        'depth maps with the images: set "do_pad": false in the model\'s '
        "preprocessor_config.json"
    )


def _tiny_config(preset: str):
    """Small random architectures (~0.1 M parameters) with their processors, for tests."""
    from transformers import DepthAnythingConfig, Dinov2Config, DPTConfig, DPTImageProcessor

    if preset == "depth-anything-tiny":
        backbone = Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            image_size=56, patch_size=14, out_features=["stage1", "stage2"],
            reshape_hidden_states=False,
        )  # fmt: skip
        config = DepthAnythingConfig(
            backbone_config=backbone, neck_hidden_sizes=[8, 16], reassemble_factors=[2, 1],
            fusion_hidden_size=16, head_hidden_size=8, reassemble_hidden_size=32, patch_size=14,
        )  # fmt: skip
        processor = DPTImageProcessor(
            size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
        )  # fmt: skip
    elif preset == "dpt-tiny":
        config = DPTConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
            image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        )  # fmt: skip
        processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    else:
        raise DepthModelError(
            f"unknown random preset {preset!r}: use depth-anything-tiny, dpt-tiny or a "
            "config.json path"
        )
    return config, processor


class DepthModel:
    """Frozen depth network + processor; :meth:`load` builds it, :meth:`predict` runs it.

    Args:
        source: hub id, local folder, or ``random:<preset|config.json>`` (see module docstring).
        prediction: ``"auto"`` (from the config, see ``depth_convert.infer_prediction_kind``),
            ``"depth"`` or ``"disparity"``.
        seed: seed of the random init (``random:`` sources only).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (half types on CUDA only).
        weights: LeReS only: a local ``res101.pth`` (None: the hub copy).
        input_size: LeReS only: the square input side (None: the release's 448).
    """

    def __init__(
        self, source: str, prediction: str = "auto", seed: int = 0, dtype: str = "float32",
        weights: str | None = None, input_size: int | None = None,
    ) -> None:  # fmt: skip
        if prediction not in ("auto", *PREDICTION_KINDS):
            raise ValueError(f"prediction must be auto, depth or disparity, not {prediction!r}")
        if dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, not {dtype!r}")
        self.source, self.seed, self.dtype = str(source), seed, getattr(torch, dtype)
        if not self.is_leres and (weights or input_size):
            raise ValueError("--depth-weights and --input-size are LeReS options (--model leres)")
        if self.is_leres and prediction == "disparity":
            raise ValueError("LeReS predicts depth (larger = farther): drop --prediction")
        self.weights, self.input_size = weights, input_size
        self.weights_file: Path | None = None
        self.requested_prediction = prediction
        self.model: torch.nn.Module | None = None
        self.processor = None
        self.device: torch.device | None = None
        self.prediction: str | None = None if prediction == "auto" else prediction

    @property
    def is_random(self) -> bool:
        return self.source.startswith(RANDOM_PREFIX)

    @property
    def is_leres(self) -> bool:
        return self.source in (LERES, RANDOM_PREFIX + LERES)

    def load(self, device: str | torch.device | None = None) -> "DepthModel":
        """Build/load the network (once) and move it to ``device`` (None/"auto": CUDA if any)."""
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        if self.model is None:
            if self.is_leres:
                model, self.processor = self._leres()
            elif self.is_random:
                model, self.processor = self._random()
            else:
                try:
                    model = AutoModelForDepthEstimation.from_pretrained(self.source)
                    self.processor = AutoImageProcessor.from_pretrained(self.source)
                except (OSError, ValueError) as err:
                    raise DepthModelError(
                        f"cannot load depth model {self.source!r}: {err}\nGive a hub id "
                        "(e.g. depth-anything/Depth-Anything-V2-Small-hf; needs internet or the "
                        "HF cache) or a local folder holding config.json, the weights and "
                        "preprocessor_config.json."
                    ) from err
            input_padding(self.processor, 1, 1)  # refuses padding it cannot undo, before any work
            if self.prediction is None:
                try:
                    self.prediction = infer_prediction_kind(model.config)
                except ValueError as err:
                    raise DepthModelError(str(err)) from err
            self.model = model.eval().requires_grad_(False)
        self.device = resolve_device(device)
        if self.dtype != torch.float32 and self.device.type != "cuda":
            raise DepthModelError(f"{self.dtype} inference needs a CUDA device, not {self.device}")
        self.model.to(self.device, self.dtype)
        return self

    def fetch_weights(self) -> "DepthModel":
        """LeReS: find (or download) ``res101.pth`` now, so a missing file fails before any
        output is written or the 500 MB network is built. Other sources: nothing to do."""
        from data_prep.depth import leres

        if self.is_leres and not self.is_random and self.weights_file is None:
            self.weights_file = leres.weights_path(self.weights)
        return self

    def _leres(self):
        from data_prep.depth import leres

        self.fetch_weights()
        try:
            processor = leres.LeReSProcessor(self.input_size or leres.INPUT_SIZE)
        except ValueError as err:
            raise DepthModelError(str(err)) from err
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG is untouched
            torch.manual_seed(self.seed)
            model = leres.LeReSEstimator()
        if self.weights_file is not None:
            leres.load_weights(model.net, self.weights_file)
        self.prediction = DEPTH
        return model, processor

    def _random(self):
        from transformers import AutoConfig, AutoModelForDepthEstimation, DPTImageProcessor

        spec = self.source[len(RANDOM_PREFIX) :]
        if spec.endswith(".json"):
            config = AutoConfig.from_pretrained(spec)
            processor = DPTImageProcessor(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
        else:
            config, processor = _tiny_config(spec)
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG is untouched
            torch.manual_seed(self.seed)
            return AutoModelForDepthEstimation.from_config(config), processor

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> the model input ``[3, h, w]`` (the model's own processor)."""
        if self.processor is None:
            raise RuntimeError("call DepthModel.load() first")
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    @torch.inference_mode()
    def predict(self, pixels: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Inputs ``[B, 3, h, w]`` (one shape) -> raw predictions resized to each ``(H, W)``."""
        if self.model is None or self.device is None:
            raise RuntimeError("call DepthModel.load() first")
        x = pixels.to(self.device, self.dtype, non_blocking=True)
        out = self.model(pixel_values=x).predicted_depth.float()  # [B, h', w']
        maps = []
        for pred, (h, w) in zip(out, sizes, strict=True):
            ph, pw = input_padding(self.processor, h, w)  # the prediction covers the padding too
            size = (h + 2 * ph, w + 2 * pw)
            up = F.interpolate(pred[None, None], size=size, mode="bilinear", align_corners=False)
            maps.append(up[0, 0, ph : ph + h, pw : pw + w].cpu().numpy())
        return maps

    def record(self) -> dict[str, Any]:
        """How the maps were made (for ``depth_info.json`` and the shard manifest)."""
        rec: dict[str, Any] = {"method": "model", "source": self.source}
        path = Path(self.source)
        if self.is_leres:
            return {**rec, **self._leres_record()}
        if self.is_random:
            rec["weights"] = "RANDOM (tests only: the maps are not meaningful)"
            rec["seed"] = self.seed
        elif path.is_dir():
            rec["source"] = str(path.resolve())
            rec["config_sha256"] = _sha256(path / "config.json")
        if self.model is not None:
            cfg = self.model.config
            rec["model_type"] = cfg.model_type
            rec["architecture"] = type(self.model).__name__
            rec["name_or_path"] = getattr(cfg, "_name_or_path", None) or None
        rec["prediction"] = self.prediction
        rec["dtype"] = str(self.dtype).removeprefix("torch.")
        rec["preprocessing"] = (
            "the model's AutoImageProcessor; prediction resized bilinearly to the image size"
        )
        return rec

    def _leres_record(self) -> dict[str, Any]:
        from data_prep.depth import leres

        rec: dict[str, Any] = {"model_type": LERES, "architecture": (
            "LeReS depth network, ResNeXt-101 32x8d encoder (AdelaiDepth res101.pth)")}  # fmt: skip
        if self.weights_file is not None:
            rec["weights"] = f"local file {self.weights_file}"
            rec["weights_sha256"] = leres.file_sha256(self.weights_file)
        else:
            rec["weights"] = "RANDOM (tests only: the maps are not meaningful)"
            rec["seed"] = self.seed
        size = self.input_size or leres.INPUT_SIZE
        rec.update(prediction=self.prediction, dtype=str(self.dtype).removeprefix("torch."),
                   preprocessing=f"RGB resized to {size}x{size} (cv2 bilinear, aspect not kept), "
                   "/255, ImageNet mean/std; output - min + 0.01, resized bilinearly to the "
                   "image size (AdelaiDepth test_depth.py)")  # fmt: skip
        return rec


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()
