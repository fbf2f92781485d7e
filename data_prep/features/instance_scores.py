"""Instance selection maths (spec 9 step 1): Gaussian log-likelihood scores and top-k (pure).

The original fits ``sklearn.mixture.GaussianMixture(n_components=1)`` (full covariance) to the
Inception features and keeps the images of highest log-likelihood. With one component, EM is
exact in one step: mean = sample mean, covariance = the maximum-likelihood (``1 / n``) sample
covariance plus ``reg_covar`` on the diagonal; the score is the Gaussian log-density. That is
what :func:`gaussian_log_likelihood` computes (float64, Cholesky), without sklearn.
"""

import math

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, solve_triangular

DEFAULT_REG_COVAR = 1e-5  # the original's help text: used for ImageNet (its default is 0)


def gaussian_log_likelihood(
    features: np.ndarray, reg_covar: float = DEFAULT_REG_COVAR
) -> np.ndarray:
    """Log-density ``[N]`` of each row of ``features [N, D]`` under the Gaussian fitted to them.

    Raises ValueError when the covariance is singular (fewer images than feature dimensions and
    ``reg_covar = 0``), saying to raise ``reg_covar``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"features must be [N >= 1, D], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    n, d = x.shape
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / n
    cov[np.diag_indices(d)] += reg_covar
    try:
        chol, _ = cho_factor(cov, lower=True, check_finite=False)
    except LinAlgError as err:
        raise ValueError(
            f"the feature covariance of {n} images in {d} dimensions is singular; pass a "
            f"positive --reg-covar (the original used 1e-5 for ImageNet), got {reg_covar}"
        ) from err
    z = solve_triangular(chol, centred.T, lower=True, check_finite=False)
    mahalanobis = (z * z).sum(axis=0)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * (d * math.log(2 * math.pi) + log_det + mahalanobis)


def num_to_keep(n: int, keep_ratio: float | None = None, num_keep: int | None = None) -> int:
    """How many of ``n`` images to keep: ``num_keep`` (capped at ``n``) or
    ``floor(n * keep_ratio)``, at least one of a non-empty group."""
    if (keep_ratio is None) == (num_keep is None):
        raise ValueError("give exactly one of keep_ratio and num_keep")
    if keep_ratio is not None and not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    if num_keep is not None and num_keep < 1:
        raise ValueError(f"num_keep must be >= 1, got {num_keep}")
    k = num_keep if num_keep is not None else math.floor(n * keep_ratio + 1e-9)
    return min(n, max(1, k)) if n else 0


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, ascending (ties: the earlier index wins)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.sort(order[:k])
