"""The knowledge-distillation teacher (spec 6.5, 9 step 5): a timm backbone's pooled features.

The original uses timm ``resnet50`` with ``num_classes=0`` (the 2048-d global-average-pooled
penultimate layer) and timm's eval transform for that model, applied to the full, un-flipped
image. Any timm model name works; its ``num_classes=0`` output is the feature vector.

Weights (``weights`` argument):

* ``"pretrained"``: timm's default pretrained tag for the name (hub download; needs internet).
  Note: timm >= 0.9 resolves ``resnet50`` to ``resnet50.a1_in1k``; the original used
  timm 0.4.12's ``resnet50`` weights, so features differ slightly (a tag such as
  ``resnet50.tv_in1k`` can be named explicitly).
* a path: a local file (``.pth`` / ``.bin`` / ``.safetensors``; a bare state dict or one under
  ``state_dict`` / ``model`` / EMA keys), e.g. the file timm downloads on another machine.
* ``"random"``: seeded random init. Features are then NOT semantically meaningful: for tests
  and offline synthetic runs only.
"""

import io
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.models import load_state_dict
from torch.utils.data import DataLoader, Dataset

from data_prep.images import to_rgb
from gp3d.data.format import file_sha256

PRETRAINED, RANDOM = "pretrained", "random"
RANDOM_DESCRIPTION = "random init (testing only)"
# Record fields that do not change the features (so they do not force a re-extraction).
NON_IDENTITY_FIELDS = ("timm_version", "source")


class TeacherWeightsError(ValueError):
    """The requested teacher weights cannot be loaded."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"``: the CUDA device when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def teacher_identity(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a teacher record that determine the features."""
    return {k: v for k, v in record.items() if k not in NON_IDENTITY_FIELDS}


class Teacher:
    """A frozen timm feature extractor plus the record of how its features were made.

    Construction is cheap and offline (a random-init model resolves the eval transform and the
    record); :meth:`load` fetches / reads the weights and moves the model to its device.

    Args:
        model_name: any timm model name (optionally with a pretrained tag).
        weights: ``"pretrained"``, ``"random"`` or a local weights file.
        input_size: square input side for the eval transform; None keeps the model's default
            (224 for resnet50). Small sizes make CPU runs on tiny synthetic images cheap.
        seed: seed of the random init (``weights="random"`` only).
        dtype: storage dtype of the features, ``"float32"`` (default, as the original's memmap)
            or ``"float16"``.
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        weights: str | os.PathLike = PRETRAINED,
        input_size: int | None = None,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")
        self.model_name, self.seed, self.dtype = model_name, seed, np.dtype(dtype)
        self.weights_file: Path | None = None
        self.weights = str(weights)  # "pretrained", "random" or "file"
        if isinstance(weights, os.PathLike) or weights not in (PRETRAINED, RANDOM):
            self.weights, self.weights_file = "file", Path(weights).expanduser().resolve()
            if not self.weights_file.is_file():
                raise TeacherWeightsError(f"teacher weights file {self.weights_file} not found")
        self.model = self._create(pretrained=False)
        overrides = {"input_size": (3, input_size, input_size)} if input_size else {}
        self.data_config = resolve_data_config(overrides, model=self.model)
        self.transform = create_transform(**self.data_config, is_training=False)
        self.record = self._record()
        self.device: torch.device | None = None

    def _create(self, pretrained: bool) -> torch.nn.Module:
        # fork_rng: the seeded init must neither depend on nor disturb the caller's RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return timm.create_model(self.model_name, pretrained=pretrained, num_classes=0)

    def _record(self) -> dict[str, Any]:
        cfg, pcfg = self.data_config, self.model.pretrained_cfg
        tag = f"{pcfg.get('architecture', self.model_name)}.{pcfg.get('tag', '')}".rstrip(".")
        record: dict[str, Any] = {"model": self.model_name}
        if self.weights_file is not None:
            record["weights"] = f"local file {self.weights_file}"
            record["weights_sha256"] = file_sha256(self.weights_file)
        elif self.weights == PRETRAINED:
            record["weights"] = "pretrained"
            record["pretrained_tag"] = tag
        else:
            record["weights"] = RANDOM_DESCRIPTION
            record["seed"] = self.seed
        record.update(
            features="num_classes=0 output (global-pooled penultimate layer), spec 6.5",
            # head_hidden_size: models with a pre-logits MLP output that instead of num_features
            embedding_dim=int(
                getattr(self.model, "head_hidden_size", 0) or self.model.num_features
            ),
            dtype=self.dtype.name,
            image="full image, not flipped, RGB (spec 6.5)",
            input_size=list(cfg["input_size"]),
            interpolation=cfg["interpolation"],
            crop_pct=cfg["crop_pct"],
            crop_mode=cfg["crop_mode"],
            normalisation={"mean": list(cfg["mean"]), "std": list(cfg["std"])},
            timm_version=timm.__version__,
        )
        return record

    @property
    def dim(self) -> int:
        return int(self.record["embedding_dim"])

    def load(self, device: str | torch.device | None = None) -> "Teacher":
        """Load the weights (once) and move the frozen model to ``device`` (auto if None)."""
        if self.device is None:
            if self.weights_file is not None:
                self._load_file(self.weights_file)
            elif self.weights == PRETRAINED:
                try:
                    self.model = self._create(pretrained=True)
                except Exception as err:  # hub / URL errors come in many types
                    raise TeacherWeightsError(
                        f"could not fetch pretrained weights for timm model {self.model_name!r} "
                        f"({type(err).__name__}: {err}). Offline? Download them elsewhere and "
                        "pass a local file (--weights PATH)."
                    ) from err
            else:
                print(
                    f"\n{'!' * 80}\nWARNING: teacher {self.model_name!r} has RANDOM weights: its "
                    "features are NOT semantically meaningful.\nUse this only for tests and "
                    f"offline synthetic runs, never for real distillation.\n{'!' * 80}",
                    file=sys.stderr,
                )
                warnings.warn("teacher features come from a random network", stacklevel=2)
            self.model.eval().requires_grad_(False)
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    def _load_file(self, path: Path) -> None:
        # Strict loading (minus the classifier, which num_classes=0 removes): a file for another
        # architecture fails loudly instead of silently leaving random layers (timm's file
        # overlay loads non-strictly when the class count differs).
        try:
            state = load_state_dict(str(path), weights_only=True)
        except Exception as err:
            raise TeacherWeightsError(f"cannot read weights file {path}: {err}") from err
        heads = self.model.pretrained_cfg.get("classifier") or ()
        for head in (heads,) if isinstance(heads, str) else heads:
            state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise TeacherWeightsError(
                f"weights file {path} does not match timm model {self.model_name!r}: {err}"
            ) from err

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Preprocessed ``[B, 3, S, S]`` -> features ``[B, D]`` in the storage dtype."""
        if self.device is None:
            raise RuntimeError("call Teacher.load() first")
        feats = self.model(images.to(self.device, non_blocking=True)).float()
        if feats.shape[1:] != (self.dim,):
            raise RuntimeError(f"{self.model_name} gave features {tuple(feats.shape)}, not [B, D]")
        return feats.cpu().numpy().astype(self.dtype)

    def embed(self, images: list[bytes], batch_size: int = 64, workers: int = 0) -> np.ndarray:
        """Encoded images (PNG / JPEG ...) -> features ``[N, D]``; ``workers`` decode them."""
        loader = DataLoader(
            _Images(images, self.transform),
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=self.device is not None and self.device.type != "cpu",
        )
        feats = [self(batch) for batch in loader]
        return np.concatenate(feats) if feats else np.zeros((0, self.dim), self.dtype)


class _Images(Dataset):
    """Encoded images -> timm eval-transformed tensors of the full RGB image (spec 6.5)."""

    def __init__(self, blobs: list[bytes], transform: Callable) -> None:
        self.blobs, self.transform = blobs, transform

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(io.BytesIO(self.blobs[i])) as img:
            return self.transform(to_rgb(img))  # 16-bit scaled, not clipped
