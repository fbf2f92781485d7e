"""Typed containers passed between cameras, patches, the renderer and the training loop.

Conventions follow shared/spec/3dgp.md: angles in radians, field of view as the *full* angle in
degrees, y is up, cameras look down -z (OpenGL), patch scale/offset in [0, 1] image units.
"""

from dataclasses import dataclass, fields

import torch

# Order of the 8 scalar camera fields used by the camera generator and its regularisers (spec 4.4).
CAMERA_FIELDS = ("yaw", "pitch", "roll", "radius", "fov", "la_yaw", "la_pitch", "la_radius")


@dataclass
class CameraParams:
    """A batch of "Ball-in-Sphere" cameras (spec 3.1). Every field has shape [B]."""

    yaw: torch.Tensor  # origin yaw (rad); yaw=0, pitch=pi/2 puts the camera at (0, 0, r)
    pitch: torch.Tensor  # origin pitch (rad) from +y; pi/2 is the equator
    roll: torch.Tensor  # always 0 in 3DGP; carried so the 8-field layout matches the spec
    radius: torch.Tensor  # distance of the camera origin from the world origin
    fov: torch.Tensor  # full field of view in degrees, shared by width and height
    la_yaw: torch.Tensor  # look-at point, spherical: yaw (rad)
    la_pitch: torch.Tensor  # look-at pitch (rad)
    la_radius: torch.Tensor  # look-at radius (scene units; the "ball")

    @property
    def batch_size(self) -> int:
        return self.yaw.shape[0]

    def to_tensor(self) -> torch.Tensor:
        """Stack into [B, 8] in CAMERA_FIELDS order."""
        return torch.stack([getattr(self, k) for k in CAMERA_FIELDS], dim=1)

    @classmethod
    def from_tensor(cls, x: torch.Tensor) -> "CameraParams":
        """Inverse of :meth:`to_tensor` for a [B, 8] tensor."""
        return cls(**{k: x[:, i] for i, k in enumerate(CAMERA_FIELDS)})

    def to(self, *args, **kwargs) -> "CameraParams":
        return CameraParams(
            **{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)}
        )

    def __getitem__(self, idx) -> "CameraParams":
        return CameraParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def cat(cams: "list[CameraParams]") -> "CameraParams":
        return CameraParams(
            **{f.name: torch.cat([getattr(c, f.name) for c in cams]) for f in fields(CameraParams)}
        )


@dataclass
class PatchParams:
    """Square patches of a full image (EpiGRAF, spec 2.6).

    The patch covers x' = (x + 1) * scale - 1 + 2 * offset_x in the [-1, 1] pixel-centre grid, and
    likewise for y, where y is *up*: offset_y = 0 selects the bottom of the image.
    """

    scale: torch.Tensor  # [B] in [min_scale, 1]
    offset: torch.Tensor  # [B, 2] (o_x, o_y), each in [0, 1 - scale]

    @property
    def batch_size(self) -> int:
        return self.scale.shape[0]

    def to_tensor(self) -> torch.Tensor:
        """[B, 3] = (scale, o_x, o_y): the discriminator's patch condition (spec 6.2)."""
        return torch.cat([self.scale[:, None], self.offset], dim=1)

    @staticmethod
    def full(batch_size: int, device: torch.device | str = "cpu") -> "PatchParams":
        return PatchParams(
            torch.ones(batch_size, device=device), torch.zeros(batch_size, 2, device=device)
        )


@dataclass
class RenderOutput:
    """What the generator renders for a batch of (patch) images."""

    rgb: torch.Tensor  # [B, 3, H, W], roughly [-1, 1], not clamped (spec 2.5)
    depth: torch.Tensor  # [B, 1, H, W], metric distance along the ray, within [near, far]
    opacity: torch.Tensor  # [B, 1, H, W], sum of compositing weights (~1: last delta is infinite)
    depth_adapted: torch.Tensor | None = None  # [B, 1, H, W] in ~[-1, 1], what D sees (spec 5.2)
    camera: CameraParams | None = None  # cameras actually rendered (after the camera generator)


@dataclass
class Batch:
    """One batch of real data as the data module yields it."""

    image: torch.Tensor  # [B, 3, H, W] float in [-1, 1]
    depth: torch.Tensor  # [B, 1, H, W] float, monocular estimate normalised as raw / 65536 * 2 - 1
    label: torch.Tensor  # [B] int64 class index (0 when the dataset has no classes)
    embedding: torch.Tensor | None = None  # [B, D] teacher features, if the shards have them
