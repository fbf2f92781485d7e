"""Inference with a trained generator: latents, truncation, chunked renders, meshes (spec 8.3-8.4).

Pure functions of a :class:`~gp3d.models.generator.Generator`; :class:`gp3d.inference.portable.
LoadedGenerator` wraps them into one object. Renders take a ``seed`` for the ray jitter (the
original jitters at eval too, spec 2.3): the jitter is a hash of (seed, ray), so an image is the
same whatever chunk size renders it, and ``noise_mode="const"`` fixes the synthesis noise.
"""

from collections.abc import Sequence

import torch

from gp3d.inference.mesh import extract_mesh
from gp3d.models.camera import generate_rays
from gp3d.types import CameraParams, RenderOutput

ClassLike = int | Sequence[int] | torch.Tensor | None


def latents(seeds: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[len(seeds), z_dim]: z ~ N(0, I) from a generator seeded with each seed (stable across
    machines and batch compositions)."""
    return torch.stack(
        [torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    ).to(device)


def one_hot(c: ClassLike, c_dim: int, batch_size: int, device) -> torch.Tensor | None:
    """Class indices (an int, a list, a [B] integer tensor) or a [B, c_dim] one-hot -> [B, c_dim]
    float, broadcast to ``batch_size``; None for an unconditional generator."""
    if c_dim == 0:
        if c is not None and not (isinstance(c, torch.Tensor) and c.numel() == 0):
            raise ValueError("this generator is unconditional (c_dim = 0): pass c=None")
        return None
    if c is None:
        raise ValueError(f"this generator is class-conditional (c_dim = {c_dim}): pass classes")
    t = torch.as_tensor(c, device=device)
    if t.is_floating_point() and t.dim() == 2:
        if t.shape[1] != c_dim:
            raise ValueError(f"one-hot classes must be [B, {c_dim}], got {list(t.shape)}")
        onehot = t.float()
    else:
        idx = t.long().reshape(-1)
        if ((idx < 0) | (idx >= c_dim)).any():
            raise ValueError(f"class indices must be in [0, {c_dim}), got {idx.tolist()}")
        onehot = torch.nn.functional.one_hot(idx, c_dim).float()
    if onehot.shape[0] == 1 and batch_size > 1:
        onehot = onehot.expand(batch_size, -1)
    if onehot.shape[0] != batch_size:
        raise ValueError(f"got {onehot.shape[0]} classes for {batch_size} latents")
    return onehot


@torch.no_grad()
def class_mean_w(G, onehot: torch.Tensor, num_samples: int = 256, seed: int = 0) -> torch.Tensor:
    """[B, w_dim] mean w of each row's class from ``num_samples`` z (spec 8.3 step 1); the same
    z for every class, each distinct class computed once."""
    z = torch.randn(num_samples, G.z_dim, generator=torch.Generator().manual_seed(seed))
    z = z.to(onehot.device)
    rows, inverse = torch.unique(onehot, dim=0, return_inverse=True)
    means = torch.stack([G.map(z, r[None].expand(num_samples, -1))[:, 0].mean(0) for r in rows])
    return means[inverse]


@torch.no_grad()
def truncated_ws(
    G,
    z: torch.Tensor,
    c: torch.Tensor | None,
    truncation_psi: float = 1.0,
    w_mean: torch.Tensor | None = None,
    class_mean_samples: int = 256,
) -> torch.Tensor:
    """ws [B, num_ws, w_dim] with w <- mean + psi (w - mean). The mean is the class-wise mean w
    when the generator is conditional (spec 8.3/8.4; ``w_mean`` [B, w_dim] may pass it in
    precomputed), else the tracked running mean ``w_avg``."""
    if truncation_psi != 1.0 and w_mean is None and c is not None:
        w_mean = class_mean_w(G, c, class_mean_samples)
    return G.map(z, c, truncation_psi, w_mean=w_mean)


@torch.no_grad()
def render_planes(
    G,
    planes: torch.Tensor,
    camera: CameraParams,
    resolution: int | None = None,
    seed: int | None = 0,
    chunk_rays: int | None = None,
    steps_multiplier: int = 1,
    far_offset: float = 0.0,
) -> RenderOutput:
    """Render tri-planes [B, ...] from cameras [B] (rendered as given: no camera generator).

    ``chunk_rays`` bounds memory (rays per chunk and sample; None = the renderer's setting, 0 =
    one shot); with a ``seed`` the result does not depend on it. Inference settings of the
    original (spec 8.4): ``steps_multiplier=2``, ``far_offset=1.0``."""
    res = resolution or G.img_resolution
    camera = camera.to(planes.device)
    origins, dirs = generate_rays(camera, res)
    far = G.renderer.far + far_offset
    rgb, depth, opacity = G.renderer(
        G.field(planes),
        origins,
        dirs,
        steps_multiplier=steps_multiplier,
        far=far,
        seed=seed,
        chunk_rays=chunk_rays,
    )

    def to_img(x):
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], res, res)

    return RenderOutput(
        rgb=to_img(rgb), depth=to_img(depth), opacity=to_img(opacity), camera=camera
    )


@torch.no_grad()
def posterior_cameras(
    G, z: torch.Tensor, c: torch.Tensor | None, seed: int = 0, use_camera_generator: bool = True
) -> CameraParams:
    """Prior samples (seeded) through the camera generator, as the metrics draw cameras."""
    gen = torch.Generator().manual_seed(seed)
    prior = G.camera_prior.sample(z.shape[0], device="cpu", generator=gen).to(z.device)
    return G.cameras(z, c, prior=prior, use_camera_generator=use_camera_generator)


@torch.no_grad()
def mesh_from_planes(
    G,
    planes: torch.Tensor,
    resolution: int = 256,
    side: float = 0.3,
    center=(0.0, 0.0, 0.0),
    threshold: float = 25.0,
    crop: bool = False,
    keep_largest: bool = False,
    chunk: int = 32**3,
):
    """A vertex-coloured trimesh of one sample's tri-planes [1, ...] (spec 8.3): raw density on
    the grid, marching cubes at ``threshold``, decoder RGB at the vertices."""
    if planes.shape[0] != 1:
        raise ValueError(f"mesh extraction takes one sample at a time, got {planes.shape[0]}")
    field = G.field(planes)
    return extract_mesh(
        lambda p: field(p[None])[1][0, :, 0],
        lambda p: field(p[None])[0][0],
        resolution=resolution,
        side=side,
        center=center,
        threshold=threshold,
        crop=crop,
        keep_largest=keep_largest,
        chunk=chunk,
        device=planes.device,
    )
