"""Fréchet distance, KID and Inception Score on feature sets (spec 8.1): pure functions.

Statistics are accumulated as float64 sums (sum x, sum x x^T, n) so that batches, DataLoader
workers and DDP ranks can be merged exactly by addition before mean and covariance are formed.
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FeatureStats:
    """Running float64 sums of features; ``mean``/``cov`` as in the original (unbiased cov)."""

    n: int
    total: torch.Tensor  # [D] sum of features
    outer: torch.Tensor  # [D, D] sum of x x^T

    @classmethod
    def empty(cls, dim: int) -> "FeatureStats":
        return cls(
            0, torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64)
        )

    @classmethod
    def of(cls, features: torch.Tensor) -> "FeatureStats":
        stats = cls.empty(features.shape[1])
        stats.update(features)
        return stats

    @property
    def dim(self) -> int:
        return self.total.shape[0]

    def update(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features [B, {self.dim}], got {tuple(features.shape)}")
        x = features.detach().to("cpu", torch.float64)
        self.n += x.shape[0]
        self.total += x.sum(dim=0)
        self.outer += x.T @ x

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        return FeatureStats(self.n + other.n, self.total + other.total, self.outer + other.outer)

    @property
    def mean(self) -> np.ndarray:
        self._need(1)
        return (self.total / self.n).numpy()

    @property
    def cov(self) -> np.ndarray:
        self._need(2)
        mu = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return ((cov + cov.T) / 2).numpy()  # symmetric up to round-off

    def _need(self, k: int) -> None:
        if self.n < k:
            raise ValueError(f"need at least {k} feature vectors, have {self.n}")


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    Tr (S1 S2)^(1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S1^(1/2) S2 S1^(1/2) (same eigenvalues as S1 S2), which avoids the complex
    round-off of a general matrix square root; tiny negative eigenvalues are clipped to 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs "
            f"{s2.shape} (were they computed with the same feature network?)"
        )
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def kernel_inception_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID: unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3, averaged over
    ``num_subsets`` random subsets of size m = min(n_real, n_fake, max_subset_size) (the
    StyleGAN-ADA estimator: subsets drawn without replacement, independently per subset)."""
    x, y = real.detach().double().cpu(), fake.detach().double().cpu()
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs [N, D] features of one network, got {x.shape} / {y.shape}")
    d = x.shape[1]
    m = min(x.shape[0], y.shape[0], max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 real and 2 fake feature vectors")
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(num_subsets):
        a = x[torch.randperm(x.shape[0], generator=gen)[:m]]
        b = y[torch.randperm(y.shape[0], generator=gen)[:m]]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        off = m * (m - 1)
        mmd = (kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off
        total += float(mmd - 2 * kxy.mean())
    return total / num_subsets


def inception_score(logits: torch.Tensor, num_splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split of the samples (in order); returns the mean
    and standard deviation over splits (the original's is50k: 10 splits)."""
    p = torch.softmax(logits.detach().double().cpu(), dim=1)
    if p.shape[0] < num_splits:
        raise ValueError(f"{p.shape[0]} samples cannot be split {num_splits} ways")
    scores = []
    for part in torch.tensor_split(p, num_splits):
        py = part.mean(dim=0, keepdim=True)
        kl = (part * (torch.log(part + 1e-12) - torch.log(py + 1e-12))).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
