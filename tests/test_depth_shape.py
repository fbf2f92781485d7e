"""Relief-normalised shape error and depth correlation (gp3d.metrics.geometry): the scores that
tell a right shape at the wrong amplitude from a flat billboard, which AbsRel cannot here."""

import numpy as np
import pytest
import torch

from gp3d.metrics import geometry as geo


def _object(seed: int = 0):
    """A bumpy object at distance ~2 (relief ~3 % of depth, like the synthetic data) on a far
    background; mask = the object."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 24), indexing="ij")
    r2 = x**2 + y**2
    bump = 0.06 * torch.sqrt((1 - r2).clamp(min=0)) + 0.005 * torch.rand(24, 24, generator=g)
    true = torch.where(r2 < 0.8, 2.0 - bump, torch.full_like(bump, 3.0))[None, None]
    return true, geo.foreground_mask(true, 0.5, 3.0)


def test_right_shape_at_any_positive_scale_and_offset_scores_perfectly():
    true, mask = _object()
    for pred in (true, 3.0 * true - 4.5, 0.2 * true + 1.0):
        assert geo.depth_shape_error(pred, true, mask).item() == pytest.approx(0.0, abs=1e-4)
        assert geo.depth_correlation(pred, true, mask).item() == pytest.approx(1.0, abs=1e-6)


def test_flat_and_inverted_relief_score_as_no_shape():
    true, mask = _object()
    flat = torch.full_like(true, 1.7)
    assert geo.depth_shape_error(flat, true, mask).item() == pytest.approx(1.0)
    assert geo.depth_correlation(flat, true, mask).item() == 0.0
    hollow = 4.0 - true  # the relief turned inside out: no positive scale fits it
    assert geo.depth_shape_error(hollow, true, mask).item() == pytest.approx(1.0)
    assert geo.depth_correlation(hollow, true, mask).item() == pytest.approx(-1.0, abs=1e-6)


def test_shape_error_is_the_least_squares_residual_over_the_mask_only():
    true, mask = _object(1)
    g = torch.Generator().manual_seed(2)
    pred = 0.5 * true + 0.01 * torch.randn(true.shape, generator=g)
    pred_off = torch.where(mask, pred, torch.full_like(pred, -7.0))  # off-mask values ignored
    t, p = true[mask].double().numpy(), pred[mask].double().numpy()
    a, b = np.polyfit(p, t, 1)
    expected = np.sqrt(np.mean((a * p + b - t) ** 2)) / t.std()
    for q in (pred, pred_off):
        assert geo.depth_shape_error(q, true, mask).item() == pytest.approx(expected, rel=1e-4)
        r = np.corrcoef(p, t)[0, 1]
        assert geo.depth_correlation(q, true, mask).item() == pytest.approx(r, rel=1e-5)
    assert 0.0 < expected < 1.0


def test_exaggerated_relief_fails_abs_rel_but_not_the_shape_error():
    """Why the shape error exists: a reconstruction with the right shape and 5x the relief
    scores worse than a flat map on median-scaled AbsRel, but perfectly on shape."""
    true, mask = _object()
    med = true[mask].median()
    exaggerated = med + 5.0 * (true - med)
    flat = torch.ones_like(true)
    assert geo.abs_rel(exaggerated, true, mask).item() > geo.abs_rel(flat, true, mask).item()
    assert geo.depth_shape_error(exaggerated, true, mask).item() < 1e-4
    assert geo.depth_shape_error(flat, true, mask).item() == pytest.approx(1.0)


def test_batched_per_image_and_shape_checked():
    t0, m0 = _object(0)
    t1, m1 = _object(3)
    true, mask = torch.cat([t0, t1]), torch.cat([m0, m1])
    pred = torch.cat([t0, torch.full_like(t1, 2.0)])
    err = geo.depth_shape_error(pred, true, mask)
    assert err.shape == (2,) and err[0].item() < 1e-4 and err[1].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        geo.depth_correlation(pred[:, 0], true[:, 0], mask[:, 0])
