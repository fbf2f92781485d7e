"""Multi-view discrimination: the cameras of V views per latent and the D batch layout.

Spec (multiview_pti.md 1.4), reading (a) "per-view": every latent's tri-planes are rendered from
V cameras and D scores each render as an ordinary image; real images stay single-view.

Batch layout (everything D sees for fakes): **latent-major**, row ``b * V + v`` is view v of
latent b, so the V views of one latent are contiguous. With the strided minibatch-std groups
(sample n is in group n mod N/G, ``minibatch_std``) a group's members lie N/G = B V / G rows
apart, which is >= V whenever the latents per device B >= the group size G: no group then holds
two views of one latent, and D cannot tell fakes by their views being alike (reals have no
such sets).

Camera distributions (``distribution``):
- ``posterior``: V independent prior samples per latent, each through the camera generator
  (without one: the prior). V = 1 is the single-view training draw exactly.
- ``prior``: V prior samples, the camera generator bypassed.
- ``around``: the posterior mean camera of the latent (mean of ``mean_samples`` posterior draws,
  fields averaged linearly as for the video camera, spec 4.3), its yaw and pitch offset by
  U(-yaw_range, yaw_range) and U(-pitch_range, pitch_range) per view.
"""

import math

import torch

from gp3d.models.camera import PITCH_EPS, spherical_to_cartesian
from gp3d.models.camera_generator import CameraGenerator
from gp3d.models.camera_prior import CameraPrior
from gp3d.types import CameraParams, PatchParams

VIEW_DISTRIBUTIONS = ("posterior", "prior", "around")


def check_view_config(num_views: int, distribution: str, mean_samples: int = 1) -> None:
    """One clear error for a bad ``model.module`` multi-view setting."""
    if num_views < 1:
        raise ValueError(f"model.module.num_views must be >= 1, got {num_views}")
    if distribution not in VIEW_DISTRIBUTIONS:
        raise ValueError(
            f"model.module.view_distribution must be one of {VIEW_DISTRIBUTIONS}, "
            f"got {distribution!r}"
        )
    if mean_samples < 1:
        raise ValueError(f"model.module.view_mean_samples must be >= 1, got {mean_samples}")


def repeat_views(x: torch.Tensor | None, num_views: int) -> torch.Tensor | None:
    """Per-latent rows [B, ...] -> per-view rows [B V, ...] in the latent-major layout."""
    return None if x is None else x.repeat_interleave(num_views, dim=0)


def view_major_to_latent_major(x: torch.Tensor, num_views: int) -> torch.Tensor:
    """Rows ordered v * B + b -> rows ordered b * V + v."""
    n = x.shape[0] // num_views
    return x.reshape(num_views, n, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def view_patches(patch: PatchParams, num_views: int) -> PatchParams:
    """Patch parameters drawn for B V renders in view-major order, rearranged latent-major.

    ``sample_patch_params`` shares one draw among 4 consecutive samples (the original's groups);
    drawn view-major, those are 4 latents of one view, so every view of a latent gets its own
    patch. V = 1 leaves the draw as it is.
    """
    return PatchParams(
        scale=view_major_to_latent_major(patch.scale, num_views),
        offset=view_major_to_latent_major(patch.offset, num_views),
    )


def posterior_cameras(
    prior: CameraPrior,
    camera_generator: CameraGenerator | None,
    z: torch.Tensor,
    c: torch.Tensor | None,
    num_views: int,
) -> CameraParams:
    """[B V] cameras: V prior draws per latent through the camera generator (if any)."""
    cams = prior.sample(z.shape[0] * num_views, device=z.device)
    if camera_generator is None:
        return cams
    return camera_generator(cams, repeat_views(z, num_views), repeat_views(c, num_views))


def posterior_mean(
    prior: CameraPrior,
    camera_generator: CameraGenerator | None,
    z: torch.Tensor,
    c: torch.Tensor | None,
    num_samples: int,
) -> CameraParams:
    """[B] per-latent mean of ``num_samples`` posterior cameras (differentiable)."""
    draws = posterior_cameras(prior, camera_generator, z, c, num_samples).to_tensor()
    return CameraParams.from_tensor(draws.reshape(z.shape[0], num_samples, -1).mean(dim=1))


def around_cameras(
    center: CameraParams, num_views: int, yaw_range: float, pitch_range: float
) -> CameraParams:
    """[B V] cameras: each centre repeated V times with uniform yaw / pitch offsets; pitch is kept
    off the poles (cam2world is degenerate there, spec 3.3)."""
    cams = repeat_views(center.to_tensor(), num_views)
    n = cams.shape[0]
    u = torch.rand(n, 2, device=cams.device, dtype=cams.dtype) * 2 - 1
    yaw = cams[:, 0] + yaw_range * u[:, 0]
    pitch = (cams[:, 1] + pitch_range * u[:, 1]).clamp(PITCH_EPS, math.pi - PITCH_EPS)
    return CameraParams.from_tensor(torch.cat([yaw[:, None], pitch[:, None], cams[:, 2:]], 1))


def draw_view_cameras(
    prior: CameraPrior,
    camera_generator: CameraGenerator | None,
    z: torch.Tensor,
    c: torch.Tensor | None,
    num_views: int = 1,
    distribution: str = "posterior",
    yaw_range: float = 0.5,
    pitch_range: float = 0.25,
    mean_samples: int = 16,
) -> CameraParams:
    """The [B V] cameras, latent-major, that the latents z [B] (classes c) are rendered from."""
    check_view_config(num_views, distribution, mean_samples)
    if distribution == "prior":
        return prior.sample(z.shape[0] * num_views, device=z.device)
    if distribution == "posterior":
        return posterior_cameras(prior, camera_generator, z, c, num_views)
    center = posterior_mean(prior, camera_generator, z, c, mean_samples)
    return around_cameras(center, num_views, yaw_range, pitch_range)


# --- what gets logged ------------------------------------------------------------------------
def per_view_means(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """[B V] latent-major logits -> [V] mean logit of each view index."""
    return logits.reshape(-1, num_views).mean(dim=0)


def view_logit_spread(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """Mean over latents of the std over its V views' logits (0 for V = 1)."""
    return logits.reshape(-1, num_views).std(dim=1, unbiased=False).mean()


def view_angle_spread(cams: CameraParams, num_views: int) -> torch.Tensor:
    """Mean over latents of the mean pairwise angle (radians) between its views' camera
    directions from the origin (0 for V = 1)."""
    d = spherical_to_cartesian(cams.yaw, cams.pitch, torch.ones_like(cams.yaw))
    d = d.reshape(-1, num_views, 3)
    if num_views == 1:
        return d.new_zeros(())
    cos = (d @ d.transpose(1, 2)).clamp(-1.0, 1.0)
    i, j = torch.triu_indices(num_views, num_views, offset=1, device=d.device)
    return torch.arccos(cos[:, i, j]).mean()
