"""Tri-plane axis convention (spec 1.3): plane 0 <- (x, y), plane 1 <- (x, z), plane 2 <- (y, z),
the first coordinate indexing width and the second height; world / cube_scale -> [-1, 1]."""

import pytest
import torch

from gp3d.models.triplane import sample_triplane_features, sample_triplanes

# Written out from the spec, not imported, so a swapped PLANE_AXES in the module fails here.
SPEC_AXES = {0: (0, 1), 1: (0, 2), 2: (1, 2)}
R = 9


def _ramp_plane() -> torch.Tensor:
    """[2, R, R]: channel 0 = the width coordinate in [-1, 1], channel 1 = the height coordinate.
    Bilinear sampling with align_corners=True reproduces a linear ramp exactly."""
    lin = torch.linspace(-1.0, 1.0, R)
    return torch.stack([lin.expand(R, R), lin[:, None].expand(R, R)])


@pytest.mark.parametrize("plane", [0, 1, 2])
def test_pattern_on_one_plane_reads_back_at_its_two_axes(plane):
    planes = torch.zeros(1, 3, 2, R, R)
    planes[0, plane] = _ramp_plane()
    points = torch.tensor([[[0.2, -0.35, 0.45], [-0.4, 0.1, -0.15], [0.05, 0.3, -0.45]]])
    u_axis, v_axis = SPEC_AXES[plane]
    expected = torch.stack([points[0, :, u_axis], points[0, :, v_axis]], dim=-1) / 0.5
    per_plane = sample_triplane_features(planes, points)
    torch.testing.assert_close(per_plane[0, plane], expected)
    others = [k for k in range(3) if k != plane]
    assert (per_plane[0, others] == 0).all()
    # The generator's path: the mean over the three planes (only one is non-zero here).
    torch.testing.assert_close(sample_triplanes(planes, points)[0], expected / 3)


@pytest.mark.parametrize("plane", [0, 1, 2])
def test_single_texel_lights_up_only_at_its_3d_location(plane):
    planes = torch.zeros(1, 3, 1, 5, 5)
    planes[0, plane, 0, 1, 3] = 1.0  # row (height) 1, column (width) 3 of a 5x5 plane
    # column 3 -> -1 + 2 * 3 / 4 = 0.5 -> world 0.25; row 1 -> -0.5 -> world -0.25
    u_axis, v_axis = SPEC_AXES[plane]
    (free,) = {0, 1, 2} - {u_axis, v_axis}
    hit, swapped = torch.zeros(2, 3), torch.zeros(2, 3)
    hit[:, u_axis], hit[:, v_axis] = 0.25, -0.25
    swapped[:, u_axis], swapped[:, v_axis] = -0.25, 0.25
    hit[1, free] = swapped[1, free] = 0.3  # the third coordinate does not matter
    feats = sample_triplane_features(planes, torch.cat([hit, swapped])[None])[0, plane, :, 0]
    torch.testing.assert_close(feats, torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_cube_scale_and_zero_padding_outside_the_cube():
    planes = torch.zeros(1, 3, 2, R, R)
    planes[0, :] = _ramp_plane()
    points = torch.tensor([[[0.5, -0.5, 0.25], [0.75, 0.2, -0.1]]])
    # with cube_scale 1 the same point sits half as far along each ramp
    torch.testing.assert_close(
        sample_triplane_features(planes, points[:, :1], cube_scale=1.0)[0, 0, 0],
        torch.tensor([0.5, -0.5]),
    )
    per_plane = sample_triplane_features(planes, points)
    torch.testing.assert_close(per_plane[0, 0, 0], torch.tensor([1.0, -1.0]))
    # x = 0.75 is outside [-0.5, 0.5]: the planes that use x read zeros; plane (y, z) does not
    assert (per_plane[0, :2, 1] == 0).all()
    torch.testing.assert_close(per_plane[0, 2, 1], torch.tensor([0.4, -0.2]))
