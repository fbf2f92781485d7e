import pytest
import torch

from gp3d.models.camera import generate_rays, pixel_grid
from gp3d.training.patches import extract_patches, sample_patch_params
from gp3d.training.schedules import mean_patch_scale
from gp3d.types import PatchParams
from tests.test_camera import random_cams


def test_patch_params_ranges_and_groups():
    p = sample_patch_params(16, min_scale=0.25, beta=0.8, group_size=4)
    assert ((p.scale >= 0.25) & (p.scale <= 1.0)).all()
    assert ((p.offset >= 0) & (p.offset <= (1 - p.scale)[:, None] + 1e-6)).all()
    assert torch.equal(
        p.scale.view(4, 4), p.scale.view(4, 4)[:, :1].expand(4, 4)
    )  # consecutive groups


def test_patch_scale_mean_matches_spec_numbers():
    torch.manual_seed(0)
    early = sample_patch_params(40_000, 0.25, beta=0.001, group_size=1).scale.mean()
    late = sample_patch_params(40_000, 0.25, group_size=1).scale.mean()  # default beta = 0.8
    assert abs(early - 0.99925) < 2e-3 and abs(mean_patch_scale(0.25, 0.001) - 0.99925) < 1e-4
    assert abs(late - 0.6667) < 5e-3 and abs(mean_patch_scale(0.25, 0.8) - 0.6667) < 1e-4


def test_real_patch_covers_the_rendered_patch_pixels():
    """A linear image (its own pixel coordinates) is resampled exactly by bilinear interpolation,
    so the extracted real patch must equal the coordinates the renderer shoots rays through."""
    res, p_res = 32, 8
    coords = pixel_grid(res)[0].T.reshape(2, res, res)  # channel 0 = x, channel 1 = y (up)
    images = coords[None].repeat(6, 1, 1, 1)
    patch = sample_patch_params(6, min_scale=p_res / res, beta=0.8, group_size=1)
    got = extract_patches(images, patch, p_res)  # [6, 2, P, P]
    want = pixel_grid(p_res, patch).transpose(1, 2).reshape(6, 2, p_res, p_res)
    assert torch.allclose(got, want, atol=1e-5)
    got64 = extract_patches(images.double(), patch, p_res)  # the grid follows the images' dtype
    assert got64.dtype == torch.float64 and torch.allclose(got64, want.double(), atol=1e-5)


def test_aligned_patch_equals_full_render_pixels():
    """With s = (P - 1) / (R - 1) and pixel-aligned offsets, patch rays are a subset of full rays."""
    res, p_res = 17, 9
    cams = random_cams(2)
    _, full_dirs = generate_rays(cams, res)
    scale = (p_res - 1) / (res - 1)
    off = torch.tensor([[4 / (res - 1), 2 / (res - 1)]]).repeat(2, 1)  # 4 px right, 2 px up
    patch = PatchParams(torch.full((2,), scale), off)
    _, patch_dirs = generate_rays(cams, p_res, patch)
    full = full_dirs.reshape(2, res, res, 3)
    # bottom row index of the patch = res - 1 - 2; columns start at 4
    sub = full[:, res - 2 - p_res : res - 2, 4 : 4 + p_res]
    assert torch.allclose(patch_dirs.reshape(2, p_res, p_res, 3), sub, atol=1e-5)
    img = full_dirs.transpose(1, 2).reshape(2, 3, res, res)
    assert torch.allclose(extract_patches(img, patch, p_res), sub.permute(0, 3, 1, 2), atol=1e-5)


def test_patch_scale_bounds_are_validated_with_equality_allowed():
    for bad in ((0.0, 1.0), (0.6, 0.5), (0.5, 1.5), (-0.1, 0.5)):
        with pytest.raises(ValueError, match="min_scale"):
            sample_patch_params(4, *bad)
    fixed = sample_patch_params(8, 0.5, 0.5)  # min = max: every patch has that scale
    assert torch.equal(fixed.scale, torch.full((8,), 0.5))
    assert ((fixed.offset >= 0) & (fixed.offset <= 0.5)).all()
    whole = sample_patch_params(4, 1.0, 1.0)  # s = 1: the whole image, offset 0
    assert torch.equal(whole.scale, torch.ones(4)) and torch.equal(whole.offset, torch.zeros(4, 2))


def test_patch_scale_fills_min_to_max_and_groups_cover_a_ragged_batch():
    torch.manual_seed(0)
    p = sample_patch_params(400, 0.2, 0.5, beta=1.0, group_size=1)  # Beta(1, 1) = uniform
    assert ((p.scale >= 0.2) & (p.scale <= 0.5)).all()
    assert p.scale.min() < 0.22 and p.scale.max() > 0.48
    assert abs(p.scale.mean().item() - 0.35) < 0.02
    # offsets ~ U[0, 1 - s] on each axis independently
    frac = p.offset / (1 - p.scale[:, None])
    assert abs(frac.mean().item() - 0.5) < 0.05 and frac.max() > 0.9 and frac.min() < 0.1
    assert not torch.equal(p.offset[:, 0], p.offset[:, 1])
    # 10 samples in the default groups of 4 (spec 2.6): 4 + 4 + 2, one draw per group
    r = sample_patch_params(10, 0.25, beta=0.8)
    assert r.scale.shape == (10,) and r.offset.shape == (10, 2)
    for lo, hi in ((0, 4), (4, 8), (8, 10)):
        assert (r.scale[lo:hi] == r.scale[lo]).all() and (r.offset[lo:hi] == r.offset[lo]).all()
    assert len({r.scale[0].item(), r.scale[4].item(), r.scale[8].item()}) == 3
