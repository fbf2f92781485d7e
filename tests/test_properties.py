"""Property-based tests (hypothesis): invariants that must hold for every input, not only the
hand-picked ones. Kept fast: few examples (the ``gp3d`` profile in conftest.py), float64 maths
where an identity is checked to tight tolerance."""

import math

import torch
from hypothesis import example, given
from hypothesis import strategies as st

from gp3d.models.camera import (
    camera_origin,
    focal_to_fov,
    fov_to_focal,
    generate_rays,
    pixel_grid,
    project_points,
)
from gp3d.models.camera_prior import denormalize_from_box, normalize_to_box
from gp3d.models.compositing import composite
from gp3d.models.ray_samplers import importance_samples, sample_pdf, stratified_samples
from gp3d.training.patches import sample_patch_params
from gp3d.types import CameraParams, PatchParams

angle = st.floats(-math.pi, math.pi)
# Away from the poles, where cam2world is degenerate (spec 3.3): with radius >= 0.8 and look-at
# radius <= 0.2 the view direction is never vertical (0.8 sin 0.3 > 0.2).
pitch = st.floats(0.3, math.pi - 0.3)


@st.composite
def cameras(draw, n: int = 2) -> CameraParams:
    def field(strategy) -> torch.Tensor:
        return torch.tensor(draw(st.lists(strategy, min_size=n, max_size=n)), dtype=torch.float64)

    return CameraParams(
        yaw=field(angle),
        pitch=field(pitch),
        roll=torch.zeros(n, dtype=torch.float64),
        radius=field(st.floats(0.8, 3.0)),
        fov=field(st.floats(5.0, 120.0)),
        la_yaw=field(angle),
        la_pitch=field(st.floats(0.0, math.pi)),
        la_radius=field(st.floats(0.0, 0.2)),
    )


@st.composite
def patches(draw, n: int = 2) -> PatchParams:
    scale = draw(st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n))
    frac = draw(st.lists(st.floats(0.0, 1.0), min_size=2 * n, max_size=2 * n))
    s = torch.tensor(scale, dtype=torch.float64)
    offset = torch.tensor(frac, dtype=torch.float64).reshape(n, 2) * (1 - s[:, None])
    return PatchParams(scale=s, offset=offset)


@given(cam=cameras(), patch=st.none() | patches(), res=st.integers(2, 9))
def test_rays_unit_length_from_the_camera_and_project_back_to_their_pixels(cam, patch, res):
    origins, dirs = generate_rays(cam, res, patch)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones_like(dirs[..., 0]))
    torch.testing.assert_close(origins, camera_origin(cam)[:, None].expand_as(origins))
    # camera round trip: a point anywhere along a pixel's ray projects back onto that pixel
    pts = origins + 0.8 * dirs
    grid = pixel_grid(res, patch).to(dirs).expand(cam.batch_size, -1, -1)
    torch.testing.assert_close(project_points(cam, pts), grid, atol=1e-7, rtol=1e-7)


@given(cam=cameras())
def test_camera_tensor_round_trip(cam):
    x = cam.to_tensor()
    assert x.shape == (cam.batch_size, 8)
    back = CameraParams.from_tensor(x)
    assert all(torch.equal(getattr(back, k), getattr(cam, k)) for k in vars(cam))


@given(fov=st.floats(1.0, 170.0), res=st.integers(2, 1024))
def test_fov_focal_round_trip(fov, res):
    assert math.isclose(focal_to_fov(fov_to_focal(fov, res), res), fov, rel_tol=1e-9)
    t = torch.tensor([fov], dtype=torch.float64)
    torch.testing.assert_close(focal_to_fov(fov_to_focal(t, res), res), t)


@given(
    lo=st.floats(-10, 10),
    width=st.floats(0.01, 20),
    u=st.lists(st.floats(0, 1), min_size=1, max_size=8),
)
def test_box_normalisation_round_trip(lo, width, u):
    lo_t = torch.tensor([lo], dtype=torch.float64)
    hi_t = lo_t + width
    x = denormalize_from_box(torch.tensor(u, dtype=torch.float64)[:, None], lo_t, hi_t)
    assert ((x >= lo_t - 1e-9) & (x <= hi_t + 1e-9)).all()
    back = normalize_to_box(x, lo_t, hi_t)  # the 1e-8 guard costs at most ~1e-8 / width
    torch.testing.assert_close(
        back, torch.tensor(u, dtype=torch.float64)[:, None], atol=1e-6, rtol=0
    )


@given(
    sigma=st.lists(st.floats(0.0, 1e4), min_size=1, max_size=24),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=24, max_size=24),
)
@example(sigma=[0.0] * 11 + [1.0], gaps=[0.0] * 24)
def test_compositing_weights_are_nonnegative_and_sum_to_at_most_one(sigma, gaps):
    n = len(sigma)
    t = 0.75 + torch.tensor(gaps[:n], dtype=torch.float64).cumsum(0)[None]
    sig = torch.tensor(sigma, dtype=torch.float64)[None, :, None]
    rgb = torch.ones(1, n, 3, dtype=torch.float64)
    out_rgb, depth, opacity, w = composite(rgb, sig, t)
    # At most one, up to the spec's +1e-10 per transmittance factor (spec 2.5): an empty ray
    # whose last sample takes everything sums to (1 + 1e-10)^(n-1) (hypothesis found it).
    bound = 1 + n * 1e-10 + 1e-12
    assert (w >= 0).all() and w.sum().item() <= bound
    torch.testing.assert_close(opacity[..., 0], w.sum(-1))
    # a white scene composites to at most white, and depth stays inside the samples
    assert (out_rgb <= bound).all()
    assert depth.item() <= t.max().item() * bound


@given(
    batch=st.integers(1, 13),
    min_scale=st.floats(0.05, 1.0),
    beta=st.floats(1e-3, 5.0),
    seed=st.integers(0, 2**31 - 1),
    res=st.integers(2, 16),
)
def test_patch_coordinates_stay_inside_the_image(batch, min_scale, beta, seed, res):
    torch.manual_seed(seed)
    patch = sample_patch_params(batch, min_scale, beta=beta)
    assert ((patch.scale >= min_scale - 1e-6) & (patch.scale <= 1 + 1e-6)).all()
    assert (patch.offset >= 0).all()
    assert (patch.offset + patch.scale[:, None] <= 1 + 1e-6).all()
    grid = pixel_grid(res, patch)
    assert grid.shape == (batch, res * res, 2)
    assert (grid.abs() <= 1 + 1e-5).all()


@given(
    weights=st.lists(st.floats(0.0, 1e6), min_size=2, max_size=12),
    num=st.integers(1, 16),
    seed=st.integers(0, 2**31 - 1),
)
def test_fine_samples_stay_inside_the_coarse_midpoints(weights, num, seed):
    torch.manual_seed(seed)
    n = len(weights) + 2
    s_coarse = stratified_samples((1,), n)
    w = torch.tensor([0.0, *weights, 0.0])[None]
    fine = importance_samples(s_coarse, w, num)
    mids = 0.5 * (s_coarse[..., 1:] + s_coarse[..., :-1])
    assert fine.shape == (1, num)
    assert ((fine >= mids[..., :1] - 1e-6) & (fine <= mids[..., -1:] + 1e-6)).all()
    bins = torch.linspace(0, 1, len(weights) + 1)[None]
    s = sample_pdf(bins, torch.tensor(weights)[None], num)
    assert ((s >= 0) & (s <= 1 + 1e-6)).all()
