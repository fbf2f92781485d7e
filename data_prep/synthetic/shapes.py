"""Signed distance functions of the synthetic dataset's object classes, in object space.

Every class lives inside the unit ball (the renderer's bounding sphere) and is described by
``PARAM_DIM`` shape parameters drawn by its ``sample`` function from uniforms in [0, 1].
SDFs take points ``p [N, 3]`` and per-point parameters ``prm [N, PARAM_DIM]`` and return
``[N]``. Some are exact distances, others conservative lower bounds (max of convex pieces),
which is all sphere tracing needs: they are 1-Lipschitz and zero on the surface.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

PARAM_DIM = 8
FIT = 0.97  # keep every shape strictly inside the unit bounding sphere


def _len2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x * x + y * y)


def _box2(x: torch.Tensor, y: torch.Tensor, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
    """Exact SDF of the 2D rectangle |x| <= bx, |y| <= by."""
    qx, qy = x.abs() - bx, y.abs() - by
    outside = _len2(qx.clamp(min=0), qy.clamp(min=0))
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _sphere(p: torch.Tensor, cx, cy, cz, r) -> torch.Tensor:
    return torch.sqrt((p[:, 0] - cx) ** 2 + (p[:, 1] - cy) ** 2 + (p[:, 2] - cz) ** 2) - r


def _radial(p: torch.Tensor) -> torch.Tensor:
    return _len2(p[:, 0], p[:, 2])


def _pad(*cols: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(cols[0].shape[0], PARAM_DIM, dtype=cols[0].dtype)
    for i, c in enumerate(cols):
        out[:, i] = c
    return out


def _lerp(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


# --- sphere: exact; radius 1, so the world radius equals the scene scale ------------------------
def sphere_sdf(p, prm):
    return p.norm(dim=-1) - 1.0


def sphere_sample(u):
    return _pad(torch.ones_like(u[:, 0]))


# --- box with rounded edges: half extents b (prm 0-2), rounding r (prm 3) -----------------------
def box_sdf(p, prm):
    q = p.abs() - prm[:, :3]
    outside = q.clamp(min=0).norm(dim=-1)
    return outside + q.max(dim=-1).values.clamp(max=0) - prm[:, 3]


def box_sample(u):
    r = _lerp(u[:, 3], 0.0, 0.08)
    b = _lerp(u[:, :3], 0.3, 0.8)
    b = b * ((FIT - r) / b.norm(dim=-1)).clamp(max=1.0)[:, None]
    return _pad(b[:, 0], b[:, 1], b[:, 2], r)


# --- torus around y: major radius R (prm 0), tube radius r (prm 1), exact -----------------------
def torus_sdf(p, prm):
    return _len2(_radial(p) - prm[:, 0], p[:, 1]) - prm[:, 1]


def torus_sample(u):
    r = _lerp(u[:, 1], 0.12, 0.3)
    return _pad(0.45 + (FIT - r - 0.45) * u[:, 0], r)


# --- cylinder along y: radius (prm 0), half height (prm 1), exact ------------------------------
def cylinder_sdf(p, prm):
    return _box2(_radial(p), p[:, 1], prm[:, 0], prm[:, 1])


def cylinder_sample(u):
    rad = _lerp(u[:, 0], 0.3, 0.75)
    return _pad(rad, torch.sqrt(FIT**2 - rad**2) * _lerp(u[:, 1], 0.5, 1.0))


# --- cone: base radius rb (prm 0) at y = -h, apex at y = +h (prm 1); conservative ---------------
def cone_sdf(p, prm):
    rb, h = prm[:, 0], prm[:, 1]
    side = (2 * h * _radial(p) + rb * (p[:, 1] - h)) / _len2(2 * h, rb)  # distance to the slant
    return torch.maximum(side, -p[:, 1] - h)


def cone_sample(u):
    rb = _lerp(u[:, 0], 0.4, 0.8)
    return _pad(rb, torch.sqrt(FIT**2 - rb**2) * _lerp(u[:, 1], 0.7, 1.0))


# --- capsule along y: radius (prm 0), segment half length (prm 1), exact ------------------------
def capsule_sdf(p, prm):
    y = p[:, 1] - p[:, 1].clamp(-prm[:, 1], prm[:, 1])
    return torch.sqrt(p[:, 0] ** 2 + y**2 + p[:, 2] ** 2) - prm[:, 0]


def capsule_sample(u):
    r = _lerp(u[:, 0], 0.2, 0.45)
    return _pad(r, (FIT - r) * _lerp(u[:, 1], 0.4, 1.0))


# --- octahedron: vertex distance s (prm 0); conservative ---------------------------------------
def octahedron_sdf(p, prm):
    return (p.abs().sum(dim=-1) - prm[:, 0]) * 0.5773503


def octahedron_sample(u):
    return _pad(_lerp(u[:, 0], 0.8, FIT))


# --- snowman: three stacked spheres (radii prm 0-2, centre heights prm 3-5) ---------------------
def snowman_sdf(p, prm):
    s = [_sphere(p, 0.0, prm[:, 3 + i], 0.0, prm[:, i]) for i in range(3)]
    return torch.minimum(torch.minimum(s[0], s[1]), s[2])


def snowman_sample(u):
    r0 = _lerp(u[:, 0], 0.42, 0.55)
    r1, r2 = r0 * _lerp(u[:, 1], 0.6, 0.8), r0 * _lerp(u[:, 2], 0.4, 0.55)
    y1 = 0.8 * (r0 + r1)  # overlapping spheres, bottom one centred at y = 0
    y2 = y1 + 0.8 * (r1 + r2)
    ys = torch.stack([torch.zeros_like(r0), y1, y2], 1)
    ys = ys - ((y2 + r2 - r0) / 2)[:, None]  # centre the stack vertically, then shrink to fit
    rs = torch.stack([r0, r1, r2], 1)
    k = (FIT / (ys.abs() + rs).max(dim=1).values).clamp(max=1.0)[:, None]
    return _pad(*(rs * k).T, *(ys * k).T)


# --- dumbbell: two spheres (radius prm 0) at x = +-c (prm 1) joined by a rod (radius prm 2) -----
def dumbbell_sdf(p, prm):
    r, c, rod = prm[:, 0], prm[:, 1], prm[:, 2]
    x = p[:, 0] - p[:, 0].clamp(-c, c)
    bar = torch.sqrt(x**2 + p[:, 1] ** 2 + p[:, 2] ** 2) - rod
    ends = torch.minimum(_sphere(p, c, 0.0, 0.0, r), _sphere(p, -c, 0.0, 0.0, r))
    return torch.minimum(bar, ends)


def dumbbell_sample(u):
    r = _lerp(u[:, 0], 0.25, 0.4)
    return _pad(r, FIT - r, _lerp(u[:, 2], 0.06, 0.14))


# --- mushroom: spherical cap (radius prm 0, centre y prm 1, cut plane y prm 2) on a stem --------
def mushroom_sdf(p, prm):
    rc, yc, ycut, rst = prm[:, 0], prm[:, 1], prm[:, 2], prm[:, 3]
    cap = torch.maximum(_sphere(p, 0.0, yc, 0.0, rc), ycut - p[:, 1])
    stem_mid, stem_half = (ycut - 0.9) / 2, (ycut + 0.9) / 2
    stem = _box2(_radial(p), p[:, 1] - stem_mid, rst, stem_half)
    return torch.minimum(cap, stem)


def mushroom_sample(u):
    rc = _lerp(u[:, 0], 0.55, 0.8)
    yc = 0.95 - rc
    return _pad(rc, yc, yc + rc * _lerp(u[:, 1], -0.2, 0.4), _lerp(u[:, 2], 0.12, 0.25))


@dataclass(frozen=True)
class ShapeClass:
    name: str
    sdf: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sample: Callable[[torch.Tensor], torch.Tensor]  # uniforms [B, PARAM_DIM] -> params


SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("sphere", sphere_sdf, sphere_sample),
    ShapeClass("box", box_sdf, box_sample),
    ShapeClass("torus", torus_sdf, torus_sample),
    ShapeClass("cylinder", cylinder_sdf, cylinder_sample),
    ShapeClass("cone", cone_sdf, cone_sample),
    ShapeClass("capsule", capsule_sdf, capsule_sample),
    ShapeClass("octahedron", octahedron_sdf, octahedron_sample),
    ShapeClass("snowman", snowman_sdf, snowman_sample),
    ShapeClass("dumbbell", dumbbell_sdf, dumbbell_sample),
    ShapeClass("mushroom", mushroom_sdf, mushroom_sample),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in SHAPE_CLASSES)
