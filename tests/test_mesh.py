"""Mesh extraction (spec 8.3): marching cubes on analytic densities, colours, formats, cleanup."""

import numpy as np
import pytest
import torch
import trimesh

from gp3d.inference.mesh import cube_bounds, density_grid, extract_mesh, original_crop, save_mesh


def sphere(center, radius, peak=50.0):
    """Raw density: peak at the centre, 0 on the sphere, negative outside (linear in distance)."""
    center = torch.tensor(center)
    return lambda p: peak * (1 - (p - center).norm(dim=-1) / radius)


@pytest.mark.parametrize("resolution", [32, 64])
def test_sphere_mesh_has_the_right_radius_centre_and_volume(resolution):
    c, r = (0.02, -0.03, 0.01), 0.09
    mesh = extract_mesh(sphere(c, r), resolution=resolution, side=0.3, threshold=0.0)
    d = np.linalg.norm(mesh.vertices - np.array(c), axis=1)
    assert abs(d.mean() - r) / r < 0.02 and d.min() > 0.95 * r and d.max() < 1.05 * r
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * r**3, rel=0.05)  # > 0: normals point out
    # a threshold halfway up the density profile is a sphere of half the radius
    half = extract_mesh(sphere(c, r), resolution=resolution, threshold=25.0)
    assert np.linalg.norm(half.vertices - np.array(c), axis=1).mean() == pytest.approx(
        r / 2, rel=0.04
    )


def test_bounds_and_resolution_are_respected():
    lo, hi = cube_bounds(side=0.5, center=(0.1, 0.0, 0.0))
    np.testing.assert_allclose(lo, [-0.15, -0.25, -0.25])
    grid = density_grid(lambda p: p[:, 0], 11, lo, hi, chunk=100)  # value = x coordinate
    assert grid.shape == (11, 11, 11)
    np.testing.assert_allclose(grid[:, 0, 0], np.linspace(-0.15, 0.35, 11), atol=1e-6)
    assert (grid[:, 3, 7] == grid[:, 0, 0]).all()  # x-major [x, y, z] layout


def test_largest_component_drops_floaters():
    big, small = sphere((-0.06, 0.0, 0.0), 0.06), sphere((0.1, 0.0, 0.0), 0.02)
    both = lambda p: torch.maximum(big(p), small(p))  # noqa: E731
    full = extract_mesh(both, resolution=48, threshold=0.0)
    assert len(full.split(only_watertight=False)) == 2
    kept = extract_mesh(both, resolution=48, threshold=0.0, keep_largest=True)
    assert len(kept.split(only_watertight=False)) == 1
    assert kept.vertices[:, 0].max() < 0.01  # the small sphere at x = 0.1 is gone


def test_original_crop_keeps_its_band():
    r = 64
    grid = np.arange(r**3, dtype=np.float32).reshape(r, r, r)
    cropped, offset = original_crop(grid)
    assert cropped.shape == (r - 2 * (r // 8), r - r // 2, r - r // 3) and offset == (8, 32, 0)
    assert cropped[0, 0, 0] == grid[8, 32, 0]
    # cropped meshes stay in world coordinates: the upper half of a centred sphere
    mesh = extract_mesh(sphere((0, 0, 0), 0.1), resolution=r, threshold=0.0, crop=True)
    assert mesh.vertices[:, 1].min() >= -1e-6 and mesh.vertices[:, 1].max() == pytest.approx(
        0.1, abs=0.005
    )


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb"])
def test_formats_round_trip_with_vertex_colours(fmt, tmp_path):
    red = lambda p: torch.tensor([1.0, -1.0, -1.0]).expand(p.shape[0], 3)  # noqa: E731
    mesh = extract_mesh(sphere((0, 0, 0), 0.1), red, resolution=24, threshold=0.0)
    path = save_mesh(mesh, tmp_path / f"m.{fmt}")
    back = trimesh.load(path, force="mesh", process=False)
    assert len(back.faces) == len(mesh.faces)
    colors = np.asarray(back.visual.vertex_colors)[:, :3]
    assert (colors == [255, 0, 0]).all()
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_input_is_explained(tmp_path):
    with pytest.raises(ValueError, match="no surface at threshold 25.0"):
        extract_mesh(lambda p: torch.zeros(p.shape[0]), resolution=8, threshold=25.0)
    mesh = extract_mesh(sphere((0, 0, 0), 0.1), resolution=16, threshold=0.0)
    with pytest.raises(ValueError, match="unsupported mesh format"):
        save_mesh(mesh, tmp_path / "m.mrc")
    with pytest.raises(ValueError, match="positive side"):
        cube_bounds(side=0.0)
