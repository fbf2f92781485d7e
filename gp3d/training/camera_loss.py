"""The camera generator's regularisers as one callable added to the G loss (spec 4.4, 4.5).

Each term draws its own fresh z, uniformly random classes (``sample_random_c``, spec 1.5) and
prior cameras, separate from the adversarial batch, exactly like the original.
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from gp3d.training.camera_regularizers import emd_loss, force_mean_loss, lipschitz_penalty
from gp3d.training.schedules import linear_schedule
from gp3d.types import CAMERA_FIELDS


class CameraLoss:
    """Force-mean + annealed 1-D EMD (the released recipe) and optionally the paper's
    gradient penalty.

    Args:
        force_mean_weight: weight of ||mean posterior angles - prior centre|| (10; 0 = off).
        mean_num_samples: samples for the force-mean term (256).
        emd_weights: per-group weights {angles, radius, fov, look_at} of W2^2 (2, 0, 1e-4, 1e-4).
        emd_anneal_kimg: lambda_emd ramps 0 -> 1 over this many kimg (10 000).
        emd_num_samples: samples per EMD term (64).
        lipschitz_weights: per-group weights of the paper's anti-collapse penalty; None = off
            (off in the released config, P1).
        lipschitz_num_samples: samples for that penalty (256).
    """

    def __init__(
        self,
        force_mean_weight: float = 10.0,
        mean_num_samples: int = 256,
        emd_weights: Mapping[str, float] | None = None,
        emd_anneal_kimg: float = 10_000,
        emd_num_samples: int = 64,
        lipschitz_weights: Mapping[str, float] | None = None,
        lipschitz_num_samples: int = 256,
    ) -> None:
        self.force_mean_weight, self.mean_num_samples = force_mean_weight, mean_num_samples
        self.emd_weights = dict(emd_weights) if emd_weights is not None else None
        self.emd_anneal_kimg, self.emd_num_samples = emd_anneal_kimg, emd_num_samples
        self.lipschitz_weights = dict(lipschitz_weights) if lipschitz_weights else None
        self.lipschitz_num_samples = lipschitz_num_samples

    @staticmethod
    def _draw(G, n: int, device):
        z = torch.randn(n, G.z_dim, device=device)
        c = (
            F.one_hot(torch.randint(G.c_dim, (n,), device=device), G.c_dim).float()
            if G.c_dim > 0
            else None
        )
        return G.camera_prior.sample(n, device=device), z, c

    def __call__(self, G, kimg: float, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = torch.zeros((), device=device)
        logs: dict[str, torch.Tensor] = {}
        prior, z, c = self._draw(G, self.mean_num_samples, device)
        post = G.camera_generator(prior, z, c)
        if self.force_mean_weight > 0:
            term = force_mean_loss(post, G.camera_prior.mean_angles())
            loss = loss + self.force_mean_weight * term
            logs["train/camera/force_mean"] = term.detach()
        lam = linear_schedule(kimg, 0.0, 1.0, self.emd_anneal_kimg)
        if self.emd_weights and lam > 0:  # skipped while lambda = 0, as in the original
            prior_e, z_e, c_e = self._draw(G, self.emd_num_samples, device)
            term = emd_loss(G.camera_generator(prior_e, z_e, c_e), prior_e, self.emd_weights)
            loss = loss + lam * term
            logs["train/camera/emd"] = term.detach()
        if self.lipschitz_weights:
            prior_l, z_l, c_l = self._draw(G, self.lipschitz_num_samples, device)
            term = lipschitz_penalty(G.camera_generator, prior_l, z_l, c_l, self.lipschitz_weights)
            loss = loss + term
            logs["train/camera/lipschitz"] = term.detach()
        x = post.to_tensor().detach()
        for i, name in enumerate(CAMERA_FIELDS):
            if name in ("roll", "radius"):
                continue  # fixed in 3DGP
            logs[f"camera/{name}_mean"] = x[:, i].mean()
            logs[f"camera/{name}_std"] = x[:, i].std()
        return loss, logs
