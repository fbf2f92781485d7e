"""Features of generated images under the FID protocol of spec 8.1, split over DDP ranks.

Protocol: the given generator (G_ema) in eval mode, psi = 1 unless asked otherwise (psi < 1
truncates toward the class-wise mean w of a conditional generator, as inference does, spec 8.3;
toward the running mean ``w_avg`` of an unconditional one), noise mode
'random', a full render at the generator's resolution with its training ray steps, cameras drawn
from the prior and passed through the camera generator, labels of random dataset items (drawn
from the manifest's class counts), then (img * 127.5 + 128).clamp -> uint8.

Sample ``i`` belongs to global batch ``i // batch_size``; batch ``b`` is rendered by rank
``b % world_size`` with every random draw seeded by (seed, b). So the set of images, and hence
the metric, does not depend on the number of ranks: features are gathered and put back in
global order.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gp3d.inference.sampling import class_mean_w
from gp3d.metrics.distributed import gather_rows, rank_and_world
from gp3d.metrics.feature_net import FeatureNetwork, to_uint8_images

_BATCH_SEED_STRIDE = 1_000_003  # decorrelates the per-batch seeds of different base seeds


@dataclass
class FakeFeatures:
    features: torch.Tensor  # [N, D] in sample order (all ranks)
    logits: torch.Tensor | None  # [N, K] when requested and the network has logits


def sample_labels(
    n: int, class_counts: list[int] | None, c_dim: int, generator: torch.Generator
) -> torch.Tensor | None:
    """Labels like those of random dataset items: multinomial over the class counts; uniform
    when the counts are unknown. None for unconditional generators."""
    if c_dim <= 0:
        return None
    if class_counts is not None and len(class_counts) != c_dim:
        raise ValueError(f"{len(class_counts)} class counts for a generator with c_dim={c_dim}")
    weights = torch.tensor(class_counts if class_counts else [1] * c_dim, dtype=torch.float64)
    if weights.sum() <= 0:
        weights = torch.ones(c_dim, dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


@torch.no_grad()
def render_uint8(
    G,
    n: int,
    seed: int,
    class_counts: list[int] | None = None,
    class_index: int | None = None,
    truncation_psi: float = 1.0,
    class_w_means: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n`` uint8 images [n, 3, R, R] rendered under the protocol above, seeded by ``seed``.
    ``class_w_means`` [c_dim, w_dim]: the class-wise mean w for psi < 1 (computed when None)."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    forked = [device] if device.type != "cpu" else []
    device_type = device.type if device.type != "cpu" else "cuda"
    with torch.random.fork_rng(devices=forked, device_type=device_type):
        torch.manual_seed(seed)  # noise, stratified ray samples, camera generator noise
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        if class_index is not None:
            if not 0 <= class_index < max(G.c_dim, 1):
                raise ValueError(f"class {class_index} out of range for c_dim={G.c_dim}")
            labels = torch.full((n,), class_index, dtype=torch.int64) if G.c_dim > 0 else None
        else:
            labels = sample_labels(n, class_counts, G.c_dim, gen)
        c = None if labels is None else F.one_hot(labels, G.c_dim).float().to(device)
        prior = G.camera_prior.sample(n, device=device, generator=None)
        w_mean = None  # psi < 1: toward each sample's class mean (conditional) or w_avg
        if truncation_psi != 1.0 and c is not None:
            if class_w_means is None:
                class_w_means = all_class_w_means(G)
            w_mean = class_w_means[labels.to(class_w_means.device)]
        out = G(
            z, c, camera=prior, truncation_psi=truncation_psi, noise_mode="random",
            adapt_depth=False, truncation_w_mean=w_mean,
        )  # fmt: skip
    return to_uint8_images(out.rgb)


@torch.no_grad()
def all_class_w_means(G, num_samples: int = 256) -> torch.Tensor:
    """[c_dim, w_dim] class-wise mean w of every class (spec 8.3: 256 z per class)."""
    device = next(G.parameters()).device
    onehot = torch.eye(G.c_dim, device=device)
    return torch.cat([class_mean_w(G, rows, num_samples) for rows in onehot.split(64)])


@torch.no_grad()
def fake_features(
    G,
    net: FeatureNetwork,
    num_samples: int,
    batch_size: int = 4,
    class_counts: list[int] | None = None,
    class_index: int | None = None,
    truncation_psi: float = 1.0,
    seed: int = 0,
    with_logits: bool = False,
) -> FakeFeatures:
    """Features of ``num_samples`` fakes, rendered by all ranks together (call on every rank)."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"need num_samples >= 1 and batch_size >= 1, got {num_samples}, {batch_size}"
        )
    num_logits = 0
    if with_logits:  # probe: raises a clear error for networks without logits
        probe = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
        num_logits = net.forward_logits(probe).shape[1]
    rank, world = rank_and_world()
    was_training = G.training
    G.eval()
    w_means = all_class_w_means(G) if truncation_psi != 1.0 and G.c_dim > 0 else None
    feats, logits, index = [], [], []
    num_batches = -(-num_samples // batch_size)
    for b in range(rank, num_batches, world):
        start = b * batch_size
        n = min(batch_size, num_samples - start)
        images = render_uint8(
            G, n, seed * _BATCH_SEED_STRIDE + b, class_counts, class_index, truncation_psi, w_means
        )
        if with_logits:
            logits.append(net.forward_logits(images).float().cpu())
        feats.append(net(images).float().cpu())
        index.append(torch.arange(start, start + n))
    G.train(was_training)
    empty = torch.zeros(0, net.dim)
    local = torch.cat(feats) if feats else empty
    order = gather_rows(torch.cat(index) if index else torch.zeros(0, dtype=torch.int64)).argsort()
    features = gather_rows(local)[order]
    out_logits = None
    if with_logits:
        local_logits = torch.cat(logits) if logits else torch.zeros(0, num_logits)
        out_logits = gather_rows(local_logits)[order]
    return FakeFeatures(features=features, logits=out_logits)
