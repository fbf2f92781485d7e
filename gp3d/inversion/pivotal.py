"""PTI stage 2: pivotal tuning. A copy of G is fine-tuned so that the fixed pivot ws renders
the target, while the locality regulariser keeps renders of nearby latents unchanged.

Reference values (spec multiview_pti 1.5, ``danielroich/PTI``): 350 steps, Adam lr 3e-4 over all
generator parameters, L2 and LPIPS(alex) weights 1, early stop once LPIPS <= 0.07; regulariser at
every step with 1 latent-ball sample at distance alpha = 30 from the pivot (towards a random w
truncated with psi 0.5, here toward the class-wise mean), weighted L2 0.1 + LPIPS 0.1 against
the frozen original's render of the same point.
"""

import copy

import torch

from gp3d.inversion.latent import StepCallback, image_losses
from gp3d.inversion.losses import locality_point, reconstruction
from gp3d.inversion.render import render_ws, step_seed
from gp3d.types import CameraParams


def locality_regulariser(
    G_tuned,
    G_frozen,
    pivot: torch.Tensor,
    camera: CameraParams,
    c: torch.Tensor | None,
    w_mean: torch.Tensor,
    lpips: torch.nn.Module,
    resolution: int,
    generator: torch.Generator,
    render_seed: int,
    alpha: float = 30.0,
    l2_weight: float = 0.1,
    lpips_weight: float = 0.1,
    num_samples: int = 1,
    psi: float = 0.5,
) -> torch.Tensor:
    """Mean over ``num_samples`` latent-ball points of l2_weight * L2 + lpips_weight * LPIPS
    between the tuned and the frozen generator's renders (PTI ``ball_holder_loss_lazy``)."""
    device = pivot.device
    z = torch.randn(num_samples, G_frozen.z_dim, generator=generator).to(device)
    cc = None if c is None else c.expand(num_samples, -1)
    with torch.no_grad():
        ws = G_frozen.map(z, cc, psi, w_mean=w_mean.expand(num_samples, -1))
    total = pivot.new_zeros(())
    for i in range(num_samples):
        point = locality_point(pivot, ws[i : i + 1], alpha)
        new = render_ws(G_tuned, point, camera, resolution, render_seed).rgb
        with torch.no_grad():
            old = render_ws(G_frozen, point, camera, resolution, render_seed).rgb
        total = total + reconstruction(new, old, lpips, lpips_weight, l2_weight)["loss"]
    return total / num_samples


def _record(losses: list, on_step: StepCallback | None, step: int, terms: dict) -> None:
    record = {"stage": 2, "step": step, **{k: float(v.detach()) for k, v in terms.items()}}
    losses.append(record)
    if on_step is not None:
        on_step(record)


def pivotal_tuning(
    G,
    ws: torch.Tensor,
    camera: CameraParams,
    target: torch.Tensor,
    lpips: torch.nn.Module,
    c: torch.Tensor | None,
    w_mean: torch.Tensor,
    depth: torch.Tensor | None = None,
    *,
    steps: int = 350,
    g_lr: float = 3e-4,
    lpips_weight: float = 1.0,
    l2_weight: float = 1.0,
    depth_weight: float = 1.0,
    lpips_threshold: float = 0.07,
    reg_interval: int = 1,
    reg_alpha: float = 30.0,
    reg_l2: float = 0.1,
    reg_lpips: float = 0.1,
    reg_samples: int = 1,
    reg_psi: float = 0.5,
    seed: int = 0,
    on_step: StepCallback | None = None,
):
    """Returns (tuned deep copy of G in eval mode and frozen, losses). G is never modified.
    ``reg_interval`` = 0 turns the regulariser off; ``lpips_threshold`` = 0 disables the early
    stop. The step's record holds the reconstruction terms and ``reg`` when it was computed."""
    tuned = copy.deepcopy(G).requires_grad_(True)
    params = [p for p in tuned.parameters() if p.is_floating_point()]
    opt = torch.optim.Adam(params, lr=g_lr)
    res = target.shape[-1]
    gen = torch.Generator().manual_seed(seed + 2)
    losses = []
    for step in range(steps):
        rseed = step_seed(seed, 2, step)
        out = render_ws(tuned, ws, camera, res, rseed)
        terms = image_losses(out, target, depth, lpips, lpips_weight, l2_weight, depth_weight)
        if float(terms["lpips"].detach()) <= lpips_threshold:  # PTI stops before stepping
            _record(losses, on_step, step, terms)
            break
        if reg_interval > 0 and step % reg_interval == 0:
            terms["reg"] = locality_regulariser(
                tuned, G, ws, camera, c, w_mean, lpips, res, gen, rseed,
                reg_alpha, reg_l2, reg_lpips, reg_samples, reg_psi,
            )  # fmt: skip
            terms["loss"] = terms["loss"] + terms["reg"]
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        _record(losses, on_step, step, terms)
    return tuned.eval().requires_grad_(False), losses
