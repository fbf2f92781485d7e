"""3D scores against ground truth: depth error, image similarity, depth distributions.

Depth (single-view reconstruction vs the true depth of the same view):

- **Foreground mask**: pixels whose true depth is finite and nearer than ``far - margin``; the
  background (depth = far by the dataset's convention, spec 1.4) has no geometry to compare.
- **AbsRel**: mean ``|s * pred - true| / true`` over the mask, where ``s = median(true) /
  median(pred)`` over the mask ("median scaling": a monocular reconstruction's depth is known up
  to scale, as in the depth-estimation literature). 0 is perfect; invariant to ``pred * k``.
- **si-log RMSE** (Eigen et al. 2014, lambda = 1): with ``d = log pred - log true`` over the
  mask, ``sqrt(mean(d^2) - mean(d)^2)``, the standard deviation of the log ratio. A global scale
  shifts every ``d`` by the same amount, so median scaling first changes nothing: the value is
  the same with or without it.
- **Shape error** (relief-normalised, scale-and-shift invariant): fit ``a * pred + b`` to
  ``true`` over the mask by least squares with ``a >= 0`` (``a = 0``, the best constant, when the
  unconstrained fit would flip the relief), then ``rmse(a * pred + b - true) / std(true)``.
  0 = the right shape at any scale and offset; 1 = no better than a flat map (which scores exactly
  1); an inverted relief (the hollow-face illusion) scores 1 too. Needed because the synthetic
  objects' relief is ~3 % of their distance: after median scaling a flat map's AbsRel is already
  ~0.02-0.04, so AbsRel cannot tell a right shape with a wrong amplitude from no shape.
- **Depth correlation**: Pearson r of ``pred`` and ``true`` over the mask (a flat map: 0 by
  convention, since its correlation is undefined).

Images (a render vs the dataset's render, both in [-1, 1]): PSNR and SSIM by torchmetrics'
functional implementations (data range 2), PSNR capped at ``PSNR_CAP`` dB so identical images
give a finite number; LPIPS through a ``gp3d.metrics.lpips.build_lpips`` module.

Unconditional depth distribution (generated samples vs the dataset's true depth; no pairing):
depth normalised to ``(depth - near) / (far - near)`` in [0, 1], then

- ``depth_w1``: Wasserstein-1 distance between the two pooled per-pixel distributions (mean
  absolute difference of their quantile functions); 0 for identical distributions.
- ``foreground_fraction``: share of pixels nearer than the background.
- ``depth_spread``: mean over images of the per-image std of normalised depth (a flat
  billboard has 0), and ``relief``: the same over foreground pixels only (shape within the
  object, not just object vs background).
"""

import torch

PSNR_CAP = 100.0  # dB; identical images would give inf
FG_MARGIN = 0.01  # foreground: true depth < far - FG_MARGIN * (far - near)
W1_QUANTILES = 1024


def foreground_mask(depth: torch.Tensor, near: float, far: float) -> torch.Tensor:
    """Boolean mask [B, 1, H, W]: finite depth nearer than the background (far)."""
    return torch.isfinite(depth) & (depth < far - FG_MARGIN * (far - near))


def _check_pair(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> None:
    if pred.shape != true.shape or mask.shape != true.shape or pred.dim() != 4:
        raise ValueError(
            f"depth maps and mask must all be [B, 1, H, W], got {list(pred.shape)}, "
            f"{list(true.shape)}, {list(mask.shape)}"
        )


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median of ``x[mask]`` [B]; NaN where the mask is empty."""
    out = []
    for xi, mi in zip(x.flatten(1), mask.flatten(1)):
        out.append(xi[mi].median() if mi.any() else xi.new_tensor(float("nan")))
    return torch.stack(out)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.flatten(1).to(x.dtype)
    return (x.flatten(1) * m).sum(1) / m.sum(1)  # NaN for an empty mask


def median_scale(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image factor [B] that matches the median of ``pred`` to that of ``true`` on ``mask``."""
    return _masked_median(true, mask) / _masked_median(pred, mask)


def abs_rel(
    pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, median_scaling: bool = True
) -> torch.Tensor:
    """Per-image AbsRel [B] over ``mask`` (after median scaling unless told otherwise)."""
    _check_pair(pred, true, mask)
    pred, true = pred.double(), true.double()
    if median_scaling:
        pred = pred * median_scale(pred, true, mask)[:, None, None, None]
    err = (pred - true).abs() / true
    return _masked_mean(torch.where(mask, err, torch.zeros_like(err)), mask).float()


def si_log_rmse(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image scale-invariant log RMSE [B] over ``mask`` (depths must be positive there)."""
    _check_pair(pred, true, mask)
    if (pred[mask] <= 0).any() or (true[mask] <= 0).any():
        raise ValueError("si-log RMSE needs positive depths on the mask")
    ones = torch.ones_like(pred, dtype=torch.float64)
    d = torch.log(torch.where(mask, pred.double(), ones)) - torch.log(
        torch.where(mask, true.double(), ones)
    )
    mean = _masked_mean(d, mask)
    var = _masked_mean(d * d, mask) - mean * mean
    return var.clamp(min=0).sqrt().float()


def _masked_centred(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` minus its per-image mean over ``mask`` (float64), zero off the mask."""
    x = x.double()
    c = x - _masked_mean(torch.where(mask, x, torch.zeros_like(x)), mask)[:, None, None, None]
    return torch.where(mask, c, torch.zeros_like(c))


def depth_shape_error(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image shape error [B]: residual RMS of the best ``a * pred + b`` (``a >= 0``) fit to
    ``true`` over ``mask``, divided by the std of ``true`` there (module docstring)."""
    _check_pair(pred, true, mask)
    p, t = _masked_centred(pred, mask), _masked_centred(true, mask)
    var_p, var_t = _masked_mean(p * p, mask), _masked_mean(t * t, mask)
    cov = _masked_mean(p * t, mask)
    # least squares on centred data: a = cov / var_p; residual variance = var_t - a * cov
    a = torch.where(var_p > 0, cov / var_p.clamp(min=1e-300), torch.zeros_like(cov)).clamp(min=0)
    resid = (var_t - a * cov).clamp(min=0)
    return (resid / var_t).sqrt().float()  # NaN where true depth is constant (no shape to match)


def depth_correlation(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation [B] of ``pred`` and ``true`` over ``mask`` (0 where ``pred``
    is constant there)."""
    _check_pair(pred, true, mask)
    p, t = _masked_centred(pred, mask), _masked_centred(true, mask)
    var_p, var_t = _masked_mean(p * p, mask), _masked_mean(t * t, mask)
    r = _masked_mean(p * t, mask) / (var_p * var_t).sqrt()
    return torch.where(var_p > 0, r, torch.zeros_like(r)).float()


def _check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"images must be two [B, 3, H, W] batches, got {list(pred.shape)}, {list(target.shape)}"
        )


def psnr(pred: torch.Tensor, target: torch.Tensor, cap: float = PSNR_CAP) -> torch.Tensor:
    """Per-image PSNR [B] in dB of images in [-1, 1] (data range 2), at most ``cap``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_images(pred, target)
    value = peak_signal_noise_ratio(
        pred.double().clamp(-1, 1), target.double().clamp(-1, 1), data_range=2.0,
        reduction="none", dim=(1, 2, 3),
    )  # fmt: skip
    return value.clamp(max=cap).float()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM [B] of images in [-1, 1] (data range 2; 11x11 Gaussian window)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_images(pred, target)
    value = structural_similarity_index_measure(
        pred.double().clamp(-1, 1), target.double().clamp(-1, 1), data_range=2.0,
        reduction="none",
    )  # fmt: skip
    return value.float()


@torch.no_grad()
def lpips_distance(
    lpips: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Per-image LPIPS [B] of images in [-1, 1] with a ``build_lpips`` module."""
    _check_images(pred, target)
    device = next(lpips.parameters()).device
    return lpips(pred.clamp(-1, 1).to(device), target.clamp(-1, 1).to(device)).float().cpu()


def normalised_depth(depth: torch.Tensor, near: float, far: float) -> torch.Tensor:
    """Depth mapped to [0, 1] over [near, far] (clamped; non-finite values count as far)."""
    depth = torch.nan_to_num(depth.float(), nan=far, posinf=far, neginf=near)
    return ((depth - near) / (far - near)).clamp(0, 1)


def wasserstein1(a: torch.Tensor, b: torch.Tensor, num_quantiles: int = W1_QUANTILES) -> float:
    """W1 between the empirical distributions of the values of ``a`` and ``b`` (any shapes):
    the mean absolute difference of their quantile functions on a midpoint grid."""
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError("Wasserstein-1 needs two non-empty samples")
    q = (torch.arange(num_quantiles, dtype=torch.float64) + 0.5) / num_quantiles
    qa = torch.quantile(_subsample(a.double().flatten()), q)
    qb = torch.quantile(_subsample(b.double().flatten()), q)
    return float((qa - qb).abs().mean())


def _subsample(x: torch.Tensor, max_items: int = 1 << 24) -> torch.Tensor:
    """torch.quantile refuses inputs over 2^24 elements: keep an evenly strided subset."""
    return x if x.numel() <= max_items else x[:: -(-x.numel() // max_items)]


def depth_statistics(depth: torch.Tensor, near: float, far: float) -> dict[str, float]:
    """Foreground fraction, depth spread and relief (module docstring) of depths [B, 1, H, W]."""
    x = normalised_depth(depth, near, far)
    fg = foreground_mask(depth, near, far)
    relief = [xi[mi].std() for xi, mi in zip(x.flatten(1), fg.flatten(1)) if mi.sum() > 1]
    return {
        "foreground_fraction": float(fg.float().mean()),
        "depth_spread": float(x.flatten(1).std(dim=1).mean()),
        "relief": float(torch.stack(relief).mean()) if relief else 0.0,
    }


def depth_distribution_scores(
    generated: torch.Tensor, true: torch.Tensor, near: float, far: float
) -> dict[str, float]:
    """Unconditional depth scores of generated depths vs true depths (both [B, 1, H, W]):
    ``depth_w1`` plus :func:`depth_statistics` of each (``*_true`` for the dataset's)."""
    out = {
        "depth_w1": wasserstein1(
            normalised_depth(generated, near, far), normalised_depth(true, near, far)
        )
    }
    out.update(depth_statistics(generated, near, far))
    out.update({f"{k}_true": v for k, v in depth_statistics(true, near, far).items()})
    return out
