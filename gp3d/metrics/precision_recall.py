"""Improved precision and recall (Kynkäänniemi et al. 2019; spec 8.1's pr50k3, k = 3).

Each set's manifold is the union of balls around its feature vectors, each ball's radius the
distance to the point's k-th nearest neighbour within its own set. Precision is the fraction of
fakes inside the real manifold; recall the fraction of reals inside the fake manifold.

The original uses VGG16 (fc2, 4096-d) features. VGG16 weights cannot be downloaded here, so the
feature network is pluggable (``gp3d.metrics.feature_net``); offline gp3d uses Inception pool3
features, which gives different numbers than VGG16: report which network was used.
"""

import torch


def knn_radii(features: torch.Tensor, k: int = 3, row_batch: int = 1024) -> torch.Tensor:
    """Distance of each vector to its k-th nearest neighbour in the same set (self excluded)."""
    if features.shape[0] <= k:
        raise ValueError(f"need more than k={k} feature vectors, got {features.shape[0]}")
    radii = []
    for i in range(0, features.shape[0], row_batch):
        d = torch.cdist(features[i : i + row_batch], features)
        # the k+1 smallest include the point itself at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def manifold_coverage(
    ref: torch.Tensor, radii: torch.Tensor, query: torch.Tensor, row_batch: int = 1024
) -> torch.Tensor:
    """Per query vector: True when it lies within radius of at least one reference vector."""
    inside = []
    for i in range(0, query.shape[0], row_batch):
        d = torch.cdist(query[i : i + row_batch], ref)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3, row_batch: int = 1024
) -> tuple[float, float]:
    """(precision, recall) of fake vs real features [N, D] (float64 distances)."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need [N, D] features of one network, got {real.shape} / {fake.shape}")
    real, fake = real.detach().double(), fake.detach().double()
    precision = manifold_coverage(real, knn_radii(real, k, row_batch), fake, row_batch)
    recall = manifold_coverage(fake, knn_radii(fake, k, row_batch), real, row_batch)
    return float(precision.double().mean()), float(recall.double().mean())
