"""Ground truth of a synthetic held-out split: images, true depths, true cameras, novel views.

The embedded synthetic dataset stores, per sample, the metric depth along each ray
(``depth_gt.npy``, float16 ``[H, W]`` in [near, far]; background = far) and the true camera
(``camera.json``, the 8 ``gp3d.types.CAMERA_FIELDS``: radians, full fov in degrees, y up,
looking down -z; spec 3.1 / 3.3). A split made with ``novel_views = K`` also stores K more
renders of the same scene (``novel_rgb.npy`` uint8 ``[K, H, W, 3]``, ``novel_depth_gt.npy``
float16 ``[K, H, W]``, ``novel_cameras.json`` a list of K camera dicts). Evaluation only: the
training loader never reads these keys.
"""

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gp3d.data.decode import decode_image_u8, normalise_images
from gp3d.data.format import DatasetFormatError, read_manifest, shard_paths
from gp3d.types import CAMERA_FIELDS, CameraParams

TRUTH_KEYS = ("depth_gt.npy", "camera.json")
NOVEL_KEYS = ("novel_rgb.npy", "novel_depth_gt.npy", "novel_cameras.json")


@dataclass
class GroundTruth:
    """N samples of a held-out split (CPU float32 tensors; images in [-1, 1])."""

    image: torch.Tensor  # [N, 3, H, W]
    depth: torch.Tensor  # [N, 1, H, W] metric depth along the ray
    camera: CameraParams  # [N]
    label: torch.Tensor  # [N] int64
    near: float
    far: float
    novel_image: torch.Tensor | None = None  # [N, K, 3, H, W]
    novel_depth: torch.Tensor | None = None  # [N, K, 1, H, W]
    novel_camera: CameraParams | None = None  # [N * K], sample-major (row i * K + j)

    @property
    def num_samples(self) -> int:
        return self.image.shape[0]

    @property
    def num_novel_views(self) -> int:
        return 0 if self.novel_image is None else self.novel_image.shape[1]

    def novel_view_camera(self, i: int, j: int = 0) -> CameraParams:
        """The true camera of novel view ``j`` of sample ``i`` (batch of 1)."""
        k = self.num_novel_views
        if not 0 <= j < k:
            raise IndexError(f"novel view {j} of {k}")
        return self.novel_camera[i * k + j : i * k + j + 1]


def _camera(d: dict, where: str) -> list[float]:
    missing = [k for k in CAMERA_FIELDS if k not in d]
    if missing:
        raise DatasetFormatError(f"{where}: camera lacks fields {missing}")
    return [float(d[k]) for k in CAMERA_FIELDS]


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _read_shard(path: str, keys: tuple[str, ...]) -> list[dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            if member.isfile() and ext in keys:
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return [samples[k] for k in sorted(samples)]


def load_ground_truth(
    folder: str | os.PathLike, max_samples: int | None = None, novel_views: bool = True
) -> GroundTruth:
    """Load the first ``max_samples`` samples of a synthetic split with their ground truth.

    Raises :class:`DatasetFormatError` naming the folder when the split has no true depth /
    cameras (not a synthetic dataset), or has no novel views while ``novel_views`` is True
    (recreate it with ``novel_views=K``, e.g. ``python -m data_prep.synthetic --novel-views 1``).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    have = set(manifest["keys"])
    want = ("png", "cls", *TRUTH_KEYS) + (NOVEL_KEYS if novel_views else ())
    missing = [k for k in want if k not in have]
    if missing:
        hint = (
            " (made without novel views: regenerate with novel_views >= 1)" if novel_views else ""
        )
        raise DatasetFormatError(
            f"{folder} has no {missing} per sample{hint}; keys: {sorted(have)}"
        )
    rows: list[dict[str, bytes]] = []
    for path in shard_paths(folder, manifest):
        rows += _read_shard(path, want)
        if max_samples is not None and len(rows) >= max_samples:
            break
    rows = rows[:max_samples]
    cam = manifest.get("camera", {})
    gt = GroundTruth(
        image=normalise_images(
            torch.from_numpy(np.stack([decode_image_u8(r["png"]) for r in rows]))
        ),
        depth=torch.from_numpy(np.stack([_npy(r["depth_gt.npy"]) for r in rows])).float()[:, None],
        camera=CameraParams.from_tensor(
            torch.tensor([_camera(json.loads(r["camera.json"]), str(folder)) for r in rows])
        ),
        label=torch.tensor([int(r["cls"]) for r in rows], dtype=torch.int64),
        near=float(cam.get("near", 0.75)),
        far=float(cam.get("far", 1.25)),
    )
    if novel_views:
        rgb = np.stack([_npy(r["novel_rgb.npy"]) for r in rows])  # [N, K, H, W, 3]
        gt.novel_image = normalise_images(torch.from_numpy(rgb))
        depth = np.stack([_npy(r["novel_depth_gt.npy"]) for r in rows])
        gt.novel_depth = torch.from_numpy(depth).float()[:, :, None]
        cams = [_camera(c, str(folder)) for r in rows for c in json.loads(r["novel_cameras.json"])]
        gt.novel_camera = CameraParams.from_tensor(torch.tensor(cams))
    return gt
