"""PTI stage 1: optimise the pivot latent (and optionally the camera) with G frozen.

The StyleGAN2-ADA projector as PTI runs it (spec multiview_pti 1.5): start at the mean w (here
the class-wise mean, spec 3dgp 8.3), Adam with the projector's lr ramp (0.01 peak, linear warm-up
over 5%, cosine decay over the last 25%), w noise 0.05 sigma_w decaying to 0 by 75% of the steps,
one w repeated over every layer ("w") or one per layer ("w+"). The loss is LPIPS(alex) + L2 (+ the
depth term) instead of the projector's VGG-LPIPS only: the same losses as stage 2.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gp3d.inference.sampling import class_mean_w
from gp3d.inversion.losses import depth_alignment_loss, reconstruction
from gp3d.inversion.render import render_ws, step_seed
from gp3d.inversion.schedule import projector_lr, w_noise_scale
from gp3d.types import CameraParams

W_SPACES = ("w", "w+")
ROLL = 2  # 3DGP cameras never roll (spec 3.1): kept fixed when the camera is optimised
StepCallback = Callable[[dict], None]


@dataclass
class LatentFit:
    """Stage-1 output: the pivot ws [1, num_ws, w_dim], the camera it was fit with, losses."""

    ws: torch.Tensor
    camera: CameraParams
    losses: list[dict]


@torch.no_grad()
def w_statistics(
    G, c: torch.Tensor | None, num_samples: int = 600, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """(mean w [1, w_dim], sigma_w) of ``num_samples`` mapped z for class c [1, c_dim] (None:
    unconditional). The mean is :func:`class_mean_w` (same z); sigma_w = sqrt(E||w - mean||^2)."""
    z = torch.randn(num_samples, G.z_dim, generator=torch.Generator().manual_seed(seed))
    device = next(G.parameters()).device
    cc = None if c is None else c.expand(num_samples, -1)
    w = G.map(z.to(device), cc)[:, 0]
    mean = class_mean_w(G, c, num_samples, seed) if c is not None else w.mean(0, keepdim=True)
    return mean, float((w - mean).square().sum(1).mean().sqrt())


def image_losses(
    out, target, depth, lpips, lpips_weight: float, l2_weight: float, depth_weight: float
) -> dict[str, torch.Tensor]:
    """Reconstruction losses of a render (+ the depth term when a target depth is given)."""
    terms = reconstruction(out.rgb, target, lpips, lpips_weight, l2_weight)
    if depth is not None:
        terms["depth"] = depth_alignment_loss(out.depth, depth)
        terms["loss"] = terms["loss"] + depth_weight * terms["depth"]
    return terms


def _clamp_camera(x: torch.Tensor, G) -> torch.Tensor:
    lo, hi = (b.to(x) for b in G.camera_prior.bounds())
    return torch.maximum(torch.minimum(x, hi), lo)


def optimise_latent(
    G,
    target: torch.Tensor,
    c: torch.Tensor | None,
    camera: CameraParams,
    lpips: torch.nn.Module,
    depth: torch.Tensor | None = None,
    *,
    steps: int = 450,
    w_lr: float = 0.01,
    w_space: str = "w",
    optimise_camera: bool = False,
    camera_lr: float = 0.01,
    lpips_weight: float = 1.0,
    l2_weight: float = 1.0,
    depth_weight: float = 1.0,
    w_avg_samples: int = 600,
    noise_factor: float = 0.05,
    noise_ramp: float = 0.75,
    lr_rampdown: float = 0.25,
    lr_rampup: float = 0.05,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> LatentFit:
    """Fit ws (and, with ``optimise_camera``, the 7 non-roll camera fields, kept inside the
    prior's box) to ``target`` [1, 3, H, H] rendered at H^2 with G frozen.

    ``camera_lr`` follows the same ramp as ``w_lr``; camera units are radians, scene units and
    degrees (fov). Returns the noise-free ws of the last step."""
    if w_space not in W_SPACES:
        raise ValueError(f"w_space must be one of {W_SPACES}, got {w_space!r}")
    res = target.shape[-1]
    w_mean, w_std = w_statistics(G, c, w_avg_samples, seed)
    num_ws = G.synthesis.num_ws
    w = w_mean[:, None].repeat(1, num_ws, 1) if w_space == "w+" else w_mean[:, None].clone()
    w.requires_grad_(True)
    cam = camera.to_tensor().to(w).clone().requires_grad_(optimise_camera)
    groups = [{"params": [w], "base_lr": w_lr}]
    if optimise_camera:
        groups.append({"params": [cam], "base_lr": camera_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999), lr=w_lr)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    losses = []
    for step in range(steps):
        t = step / max(steps, 1)
        for g in opt.param_groups:
            g["lr"] = projector_lr(t, g["base_lr"], lr_rampdown, lr_rampup)
        noise = torch.randn(w.shape, generator=noise_gen).to(w) * w_noise_scale(
            t, w_std, noise_factor, noise_ramp
        )
        ws = (w + noise).expand(-1, num_ws, -1)
        out = render_ws(G, ws, CameraParams.from_tensor(cam), res, step_seed(seed, 1, step))
        terms = image_losses(out, target, depth, lpips, lpips_weight, l2_weight, depth_weight)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if optimise_camera:
            cam.grad[:, ROLL] = 0.0
        opt.step()
        if optimise_camera:
            with torch.no_grad():
                cam.copy_(_clamp_camera(cam, G))
        record = {"stage": 1, "step": step, **{k: float(v.detach()) for k, v in terms.items()}}
        losses.append(record)
        if on_step is not None:
            on_step(record)
    ws = w.detach().expand(-1, num_ws, -1).clone()
    return LatentFit(ws=ws, camera=CameraParams.from_tensor(cam.detach().clone()), losses=losses)
