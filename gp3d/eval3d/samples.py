"""Unconditional samples for the benchmark: images (for KID / FID) and depth, in one render.

The protocol is ``gp3d.metrics.fakes`` (spec 8.1): the EMA generator in eval mode, psi = 1,
random noise, prior cameras through the camera generator, labels drawn like random dataset
items, a full render at the generator's resolution; batch ``b`` seeded by (seed, b). The depth of
the same renders feeds the depth-distribution scores, so both see the same samples.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gp3d.metrics.fakes import sample_labels
from gp3d.metrics.feature_net import FeatureNetwork, to_uint8_images

_BATCH_SEED_STRIDE = 1_000_003


@dataclass
class Samples:
    features: torch.Tensor  # [N, D] of the uint8 images
    depth: torch.Tensor  # [N, 1, R, R] metric depth


@torch.no_grad()
def render_samples(
    G,
    net: FeatureNetwork,
    num_samples: int,
    batch_size: int = 8,
    class_counts: list[int] | None = None,
    seed: int = 0,
    progress=None,
) -> Samples:
    """Features and depth of ``num_samples`` generated images; ``progress(n)`` after each batch."""
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    feats, depths = [], []
    forked = [device] if device.type != "cpu" else []
    for b, start in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - start)
        batch_seed = seed * _BATCH_SEED_STRIDE + b
        gen = torch.Generator().manual_seed(batch_seed)
        with torch.random.fork_rng(devices=forked, device_type=device.type if forked else "cuda"):
            torch.manual_seed(batch_seed)
            z = torch.randn(n, G.z_dim, generator=gen).to(device)
            labels = sample_labels(n, class_counts, G.c_dim, gen)
            c = None if labels is None else F.one_hot(labels, G.c_dim).float().to(device)
            prior = G.camera_prior.sample(n, device=device)
            out = G(z, c, camera=prior, noise_mode="random", adapt_depth=False)
        feats.append(net(to_uint8_images(out.rgb)).float().cpu())
        depths.append(out.depth.float().cpu())
        if progress is not None:
            progress(n)
    G.train(was_training)
    return Samples(torch.cat(feats), torch.cat(depths))
