"""Every annealed quantity as a pure function of training progress in kimg (spec 7.4)."""

import math


def linear_schedule(kimg: float, start: float, end: float, duration_kimg: float) -> float:
    """Linear ramp from ``start`` at 0 kimg to ``end`` at ``duration_kimg``, constant after."""
    if duration_kimg <= 0:
        return end
    frac = min(max(kimg / duration_kimg, 0.0), 1.0)
    return start + (end - start) * frac


def blur_sigma(kimg: float, init_sigma: float = 10.0, fade_kimg: float = 200.0) -> float:
    """D-input blur sigma: 10 -> 0 over 200 kimg."""
    return linear_schedule(kimg, init_sigma, 0.0, fade_kimg)


def nerf_noise_std(kimg: float, init_std: float = 1.0, fade_kimg: float = 5000.0) -> float:
    """Density noise std: 1 -> 0 over 5000 kimg (spec 1.6)."""
    return linear_schedule(kimg, init_std, 0.0, fade_kimg)


def patch_beta(
    kimg: float, start: float = 0.001, end: float = 0.8, anneal_kimg: float = 10_000
) -> float:
    """Beta(1, beta) parameter of the patch-scale distribution: 0.001 -> 0.8 over 10k kimg."""
    return linear_schedule(kimg, start, end, anneal_kimg)


def ema_beta(
    nimg: int, batch_size: int, ema_kimg: float = 20.0, rampup: float | None = 0.05
) -> float:
    """EMA decay per step: half-life min(ema_kimg, rampup * nimg) in images (spec 7.5)."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


def mean_patch_scale(min_scale: float, beta: float, max_scale: float = 1.0) -> float:
    """E[s] under the patch distribution: min + (max - min) / (1 + beta) (Beta(1, b) mean)."""
    return min_scale + (max_scale - min_scale) / (1.0 + beta)


def r1_gamma_auto(resolution: int, batch_size: int) -> float:
    """StyleGAN2-ADA's heuristic gamma = 0.0002 res^2 / batch (dataset resolution, spec 7.1)."""
    return 0.0002 * resolution**2 / batch_size


def lazy_reg_adam(
    lr: float, betas: tuple[float, float], interval: int
) -> tuple[float, tuple[float, float]]:
    """Learning rate and betas corrected for a lazy regulariser every ``interval`` steps."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


def log2_int(x: int) -> int:
    value = int(round(math.log2(x)))
    if 2**value != x:
        raise ValueError(f"{x} is not a power of two")
    return value
