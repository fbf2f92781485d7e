"""Picking the class of an unlabelled photo for a class-conditional generator.

Two passes: every class is scored by the reconstruction loss (LPIPS + L2) of its class-mean w
rendered from its mean posterior camera (one render per class, no optimisation); the ``topk``
best then each get a short stage-1 fit, and the class with the lowest final loss wins.
"""

import torch

from gp3d.inference.sampling import class_mean_w
from gp3d.inference.trajectories import posterior_mean_camera
from gp3d.inversion.latent import optimise_latent
from gp3d.inversion.losses import reconstruction
from gp3d.inversion.render import render_ws


@torch.no_grad()
def rank_classes(
    G, target: torch.Tensor, lpips: torch.nn.Module, batch_size: int = 16
) -> list[tuple[int, float]]:
    """[(class, loss)] for every class, best (lowest) first."""
    device = target.device
    scores = []
    for start in range(0, G.c_dim, batch_size):
        idx = torch.arange(start, min(start + batch_size, G.c_dim), device=device)
        onehot = torch.nn.functional.one_hot(idx, G.c_dim).float()
        ws = class_mean_w(G, onehot)[:, None].expand(-1, G.synthesis.num_ws, -1)
        cams = posterior_mean_camera(G, onehot)
        rgb = render_ws(G, ws, cams, target.shape[-1], seed=0).rgb
        for i, k in enumerate(idx.tolist()):
            loss = reconstruction(rgb[i : i + 1], target, lpips)["loss"]
            scores.append((k, float(loss)))
    return sorted(scores, key=lambda kv: kv[1])


def search_class(
    G,
    target: torch.Tensor,
    lpips: torch.nn.Module,
    topk: int = 5,
    steps: int = 50,
    depth: torch.Tensor | None = None,
    optimise_camera: bool = False,
    seed: int = 0,
) -> tuple[int, dict[int, float]]:
    """(best class, {class: final stage-1 loss}) over the ``topk`` classes of
    :func:`rank_classes`, each fit for ``steps`` stage-1 steps from its own mean camera."""
    if G.c_dim == 0:
        raise ValueError("this generator is unconditional: there is no class to search")
    finals = {}
    for k, _ in rank_classes(G, target, lpips)[: max(1, topk)]:
        onehot = torch.nn.functional.one_hot(torch.tensor([k], device=target.device), G.c_dim)
        onehot = onehot.float()
        camera = posterior_mean_camera(G, onehot)
        fit = optimise_latent(
            G, target, onehot, camera, lpips, depth, steps=steps,
            optimise_camera=optimise_camera, seed=seed,
        )  # fmt: skip
        finals[k] = fit.losses[-1]["loss"]
    return min(finals, key=finals.get), finals
