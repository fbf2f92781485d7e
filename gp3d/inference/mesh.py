"""Geometry extraction: density on a voxel grid -> marching cubes -> a vertex-coloured mesh.

Spec 8.3. The original queries the *raw* (pre-softplus, noise-free) density on a 256^3 grid over
the cube [-0.15, 0.15]^3, runs marching cubes at 25.0 and then applies a hard-coded crop (keep
the central x band, the upper half in y, drop the +z third) that suits its face-forward
datasets; here those numbers are defaults and the crop is optional and off. Vertices are in world
coordinates (the original normalises the scale instead). Marching cubes is scikit-image's;
trimesh writes .ply / .obj / .glb and splits connected components.
"""

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

# points [M, 3] -> values [M] or [M, k]
PointFn = Callable[[torch.Tensor], torch.Tensor]
MESH_FORMATS = (".ply", ".obj", ".glb")


def cube_bounds(side: float = 0.3, center=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """(lo [3], hi [3]) of an axis-aligned cube of side ``side`` around ``center`` (spec 8.3)."""
    if side <= 0:
        raise ValueError(f"the grid cube needs a positive side, got {side}")
    c = np.asarray(center, dtype=np.float64).reshape(3)
    return c - side / 2, c + side / 2


def grid_points(resolution: int, lo, hi) -> torch.Tensor:
    """[R^3, 3] voxel-corner points, x-major ([x, y, z] 'ij' order), endpoints included."""
    if resolution < 2:
        raise ValueError(f"grid resolution must be >= 2, got {resolution}")
    axes = [torch.linspace(float(a), float(b), resolution) for a, b in zip(lo, hi)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


@torch.no_grad()
def density_grid(
    fn: PointFn,
    resolution: int,
    lo,
    hi,
    chunk: int = 32**3,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Evaluate ``fn`` on the grid in chunks of ``chunk`` points; returns [R, R, R] float32."""
    pts = grid_points(resolution, lo, hi)
    out = [
        fn(pts[i : i + chunk].to(device)).reshape(-1).float().cpu()
        for i in range(0, len(pts), chunk)
    ]
    return torch.cat(out).reshape(resolution, resolution, resolution).numpy()


def original_crop(grid: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The original's hard-coded crop (spec 8.3 step 4): x in [R/8, R - R/8), y in [R/2, R),
    z in [0, R - R/3). Returns the cropped grid and the voxel index of its first corner."""
    r = grid.shape[0]
    x0, y0 = r // 8, r // 2
    return grid[x0 : r - r // 8, y0:, : r - r // 3], (x0, y0, 0)


def marching_cubes(
    grid: np.ndarray, threshold: float, origin, spacing
) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of ``grid`` at ``threshold`` -> (vertices [V, 3] in world units, faces [F, 3]).

    ``origin`` [3] is the world position of ``grid[0, 0, 0]`` and ``spacing`` [3] the voxel
    size. Faces are wound so normals point out of the dense region (toward lower density)."""
    from skimage import measure

    vmin, vmax = float(np.nanmin(grid)), float(np.nanmax(grid))
    if not vmin < threshold < vmax:
        raise ValueError(
            f"no surface at threshold {threshold}: the density on the grid lies in "
            f"[{vmin:.4g}, {vmax:.4g}]; choose a threshold inside that range (or a larger cube)"
        )
    spacing = np.broadcast_to(np.asarray(spacing, np.float64), (3,))
    verts, faces, _, _ = measure.marching_cubes(
        grid, level=threshold, spacing=tuple(spacing), gradient_direction="descent"
    )
    verts = verts + np.asarray(origin, np.float64)
    # scikit-image winds these faces clockwise seen from outside; trimesh (and .ply / .glb
    # viewers) take counter-clockwise as front-facing, so reverse the winding.
    return verts.astype(np.float32), faces[:, ::-1].astype(np.int64)


def largest_component(mesh):
    """Keep the connected component with the most faces (drops floaters)."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    return max(parts, key=lambda m: len(m.faces))


def make_mesh(verts: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None):
    """A trimesh.Trimesh; ``colors`` [V, 3] in [-1, 1] (the decoder's raw RGB) become uint8."""
    import trimesh

    vc = None
    if colors is not None:
        rgb = ((np.clip(colors, -1, 1) + 1) * 127.5).round().astype(np.uint8)
        vc = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=vc, process=False)


def save_mesh(mesh, path: str | os.PathLike) -> Path:
    """Write .ply / .obj / .glb (vertex colours kept) atomically: temp file, then rename."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {path.suffix!r}; use one of {MESH_FORMATS}")
    data = mesh.export(file_type=suffix[1:])
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def extract_mesh(
    density_fn: PointFn,
    color_fn: PointFn | None = None,
    resolution: int = 256,
    side: float = 0.3,
    center=(0.0, 0.0, 0.0),
    threshold: float = 25.0,
    crop: bool = False,
    keep_largest: bool = False,
    chunk: int = 32**3,
    device: torch.device | str = "cpu",
):
    """The whole protocol of spec 8.3 for one field: grid, (crop), marching cubes, colours.

    ``density_fn`` maps world points [M, 3] to raw density [M]; ``color_fn`` (optional) maps
    them to RGB [M, 3] in ~[-1, 1] for the vertex colours."""
    lo, hi = cube_bounds(side, center)
    grid = density_grid(density_fn, resolution, lo, hi, chunk, device)
    spacing = (hi - lo) / (resolution - 1)
    offset = (0, 0, 0)
    if crop:
        grid, offset = original_crop(grid)
    verts, faces = marching_cubes(grid, threshold, lo + np.asarray(offset) * spacing, spacing)
    colors = None
    if color_fn is not None:
        with torch.no_grad():
            v = torch.from_numpy(verts)
            colors = torch.cat(
                [
                    color_fn(v[i : i + chunk].to(device)).float().cpu()
                    for i in range(0, len(v), chunk)
                ]
            ).numpy()
    mesh = make_mesh(verts, faces, colors)
    return largest_component(mesh) if keep_largest else mesh
