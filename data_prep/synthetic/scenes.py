"""Procedural scenes of the embedded synthetic dataset, and a batched torch sphere tracer for them.

Reusable API (also for tests that fit tri-planes to one scene):

- :func:`sample_scenes` draws one textured object per class id;
- :func:`sample_cameras` draws deliberately non-aligned "Ball-in-Sphere" cameras;
- :func:`render` renders RGB in [0, 1] and metric depth in [near, far].

A hand-placed scene is a sampled one with fields replaced, e.g. a unit-rotation sphere of radius
0.2 at the origin: ``replace(sample_scenes(0, [0]), center=torch.zeros(1, 3),
scale=torch.tensor([0.2]), rotation=torch.eye(3)[None])`` (class 0 is the sphere, whose radius is
exactly ``scale``).

Rendering uses the model's own rays (``gp3d.models.camera.generate_rays``: pixel centres at
+-1, y up, looking down -z, fov = full angle; spec 2.1, 3.2, 3.3), so depth is the metric
distance along each unit ray, exactly what the volume renderer outputs. Objects sit inside the
model's scene box [-0.5, 0.5]^3 (spec 1.4); the background has depth = far (spec 1.4: the last
sample absorbs the remaining transmittance).
"""

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from data_prep.synthetic.shapes import PARAM_DIM, SHAPE_CLASSES
from data_prep.synthetic.textures import PATTERNS, background_color, texture_weight
from gp3d.models.camera import generate_rays
from gp3d.types import CameraParams

NEAR, FAR = 0.75, 1.25  # the model's fixed near/far (spec 2.2)
SCALE_RANGE = (0.15, 0.25)  # world radius of the object's bounding sphere
MAX_OFFSET = 0.05  # object centre within this ball: |centre| + scale <= 0.3 < 0.5 (scene box)
MAX_TILT = math.radians(35)  # objects are mostly upright, at any yaw
_EPS = 5e-4  # sphere-tracing hit threshold, object units (a 64 px pixel is ~0.05 units)


@dataclass
class Scenes:
    """A batch of B single-object scenes; every field has a leading batch dimension."""

    class_id: torch.Tensor  # [B] int64 index into synthetic_shapes.SHAPE_CLASSES
    shape_params: torch.Tensor  # [B, PARAM_DIM] class-specific dimensions (object units)
    center: torch.Tensor  # [B, 3] world position of the object origin
    scale: torch.Tensor  # [B] world size of one object unit (= bounding-sphere radius)
    rotation: torch.Tensor  # [B, 3, 3] object-to-world rotation
    color_a: torch.Tensor  # [B, 3] base albedo in [0, 1]
    color_b: torch.Tensor  # [B, 3] pattern albedo in [0, 1]
    pattern: torch.Tensor  # [B] int64 texture kind (synthetic_textures.PATTERNS)
    pattern_freq: torch.Tensor  # [B] spatial frequency (cycles per object unit)
    pattern_axis: torch.Tensor  # [B, 3] unit axis of the pattern, object space
    pattern_phase: torch.Tensor  # [B] phase (rad)
    light_dir: torch.Tensor  # [B, 3] unit direction towards the light, world space
    ambient: torch.Tensor  # [B] ambient fraction of the lambertian shading
    bg_color_a: torch.Tensor  # [B, 3] background gradient colours
    bg_color_b: torch.Tensor  # [B, 3]
    bg_axis: torch.Tensor  # [B, 3] unit gradient axis (over ray directions)
    bg_freq: torch.Tensor  # [B] background pattern frequency
    bg_phase: torch.Tensor  # [B]

    @property
    def batch_size(self) -> int:
        return self.class_id.shape[0]

    def __getitem__(self, idx) -> "Scenes":
        return Scenes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device: torch.device | str) -> "Scenes":
        """Move to ``device`` (dtypes stay: float32 fields, int64 ids)."""
        return Scenes(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _as_generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _unit(g: torch.Generator, n: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 3, generator=g), dim=-1)


def _axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation matrices [B, 3, 3] about unit axes [B, 3] by angles [B]."""
    k = axis.new_zeros(axis.shape[0], 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, device=axis.device) + s * k + (1 - c) * (k @ k)


def sample_scenes(seed: int | torch.Generator, class_ids: torch.Tensor | list[int]) -> Scenes:
    """One random object per entry of ``class_ids`` (CPU, float32; deterministic in ``seed``).

    Objects: random class-specific proportions, world radius in ``SCALE_RANGE``, centre within
    ``MAX_OFFSET`` of the origin, any yaw and a tilt up to 35 degrees, two random colours and a
    procedural texture; plus a random light and a procedural background.
    """
    g = _as_generator(seed)
    cls = torch.as_tensor(class_ids, dtype=torch.int64)
    b = cls.shape[0]
    u = torch.rand(b, PARAM_DIM, generator=g)
    params = torch.zeros(b, PARAM_DIM)
    for k, shape in enumerate(SHAPE_CLASSES):
        m = cls == k
        if m.any():
            params[m] = shape.sample(u[m])
    offset = _unit(g, b) * MAX_OFFSET * torch.rand(b, 1, generator=g) ** (1 / 3)
    spin = _axis_angle(torch.tensor([[0.0, 1.0, 0.0]]).expand(b, 3), _uniform(g, 0, 2 * math.pi, b))
    tilt_dir = _uniform(g, 0, 2 * math.pi, b)  # tilt about a random horizontal axis
    tilt_axis = torch.stack([torch.cos(tilt_dir), torch.zeros(b), torch.sin(tilt_dir)], 1)
    rot = _axis_angle(tilt_axis, _uniform(g, 0, MAX_TILT, b)) @ spin
    light = _unit(g, b)
    light[:, 1] = light[:, 1].abs() + 0.3  # mostly from above, as in photos
    return Scenes(
        class_id=cls,
        shape_params=params,
        center=offset,
        scale=_uniform(g, *SCALE_RANGE, b),
        rotation=rot,
        color_a=_uniform(g, 0.05, 0.95, b, 3),
        color_b=_uniform(g, 0.05, 0.95, b, 3),
        pattern=torch.randint(0, len(PATTERNS), (b,), generator=g),
        pattern_freq=_uniform(g, 1.0, 4.0, b),
        pattern_axis=_unit(g, b),
        pattern_phase=_uniform(g, 0, 2 * math.pi, b),
        light_dir=F.normalize(light, dim=-1),
        ambient=_uniform(g, 0.25, 0.5, b),
        bg_color_a=_uniform(g, 0.0, 1.0, b, 3),
        bg_color_b=_uniform(g, 0.0, 1.0, b, 3),
        bg_axis=_unit(g, b),
        bg_freq=_uniform(g, 2.0, 10.0, b),
        bg_phase=_uniform(g, 0, 2 * math.pi, b),
    )


def sample_cameras(
    seed: int | torch.Generator,
    n: int,
    yaw_range: tuple[float, float] = (-math.pi / 2, math.pi / 2),
    pitch_range: tuple[float, float] = (math.pi / 4, 3 * math.pi / 4),
    radius_range: tuple[float, float] = (0.9, 1.1),
    fov_range: tuple[float, float] = (15.0, 45.0),
    max_look_at_radius: float = 0.15,
) -> CameraParams:
    """``n`` random cameras (float32, CPU); deliberately wider than a single aligned view.

    Yaw/pitch uniform in their ranges (the model's prior box, spec 3.4), radius uniform, fov
    uniform (degrees, full angle), look-at direction uniform on the sphere with radius uniform in
    [0, max_look_at_radius] (as spec 3.4 samples it); roll is 0.
    """
    g = _as_generator(seed)
    return CameraParams(
        yaw=_uniform(g, *yaw_range, n),
        pitch=_uniform(g, *pitch_range, n),
        roll=torch.zeros(n),
        radius=_uniform(g, *radius_range, n),
        fov=_uniform(g, *fov_range, n),
        la_yaw=_uniform(g, -math.pi, math.pi, n),
        la_pitch=torch.arccos(1 - 2 * torch.rand(n, generator=g)),
        la_radius=_uniform(g, 0.0, max_look_at_radius, n),
    )


def _sphere_trace(sdf, o, d, prm, max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """March rays (object space, unit ``d``) inside the unit bounding sphere -> (t, hit)."""
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 1.0)
    sq = disc.clamp(min=0).sqrt()
    t_exit = -b + sq
    t = torch.full_like(b, math.inf)
    hit = torch.zeros_like(b, dtype=torch.bool)
    idx = torch.nonzero((disc > 0) & (t_exit > 0)).squeeze(1)
    ta = (-b[idx] - sq[idx]).clamp(min=0)
    oa, da, pa, ea = o[idx], d[idx], prm[idx], t_exit[idx]
    for step in range(max_steps + 1):
        if idx.numel() == 0:
            break
        dist = sdf(oa + ta[:, None] * da, pa)
        last = step == max_steps
        done = dist < (1e-2 if last else _EPS)  # grazing rays out of steps: accept near-misses
        hit[idx[done]] = True
        t[idx[done]] = ta[done]
        if last:
            break
        ta = ta + dist
        keep = ~done & (ta <= ea)
        idx, ta, oa, da, pa, ea = idx[keep], ta[keep], oa[keep], da[keep], pa[keep], ea[keep]
    return t, hit


def _normals(sdf, p: torch.Tensor, prm: torch.Tensor, h: float = 1e-3) -> torch.Tensor:
    """Unit SDF gradients by the 4-point tetrahedral difference."""
    taps = p.new_tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]])
    n = sum(k * sdf(p + h * k, prm)[:, None] for k in taps)
    return F.normalize(n, dim=-1)


@torch.no_grad()
def render(
    scenes: Scenes,
    cams: CameraParams,
    resolution: int,
    background: str = "procedural",
    plain_color: tuple[float, float, float] = (1.0, 1.0, 1.0),
    near: float = NEAR,
    far: float = FAR,
    max_steps: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render scene i with camera i, on the device of ``scenes`` (float32).

    Returns ``rgb [B, 3, H, W]`` in [0, 1] (lambertian-shaded textured object over the
    background) and ``depth [B, 1, H, W]``: metric distance along each unit ray to the first
    surface, ``far`` where a ray misses, clamped to [near, far]. ``background="procedural"``
    colours misses by a gradient + pattern over the ray direction; ``"plain"`` by
    ``plain_color``. Rows run top to bottom, columns left to right (pixel (0, 0) is top-left).
    """
    if cams.batch_size != scenes.batch_size:
        raise ValueError(f"{scenes.batch_size} scenes but {cams.batch_size} cameras")
    if background not in ("procedural", "plain"):
        raise ValueError(f"background must be 'procedural' or 'plain', got {background!r}")
    dev = scenes.center.device
    cams = cams.to(device=dev, dtype=torch.float32)
    bsz, n_pix = scenes.batch_size, resolution * resolution
    origins, dirs = generate_rays(cams, resolution)  # [B, N, 3] world
    rot = scenes.rotation  # object->world; (x - c) @ R maps world rows to object rows
    o_obj = ((origins - scenes.center[:, None]) @ rot / scenes.scale[:, None, None]).reshape(-1, 3)
    d_obj = (dirs @ rot).reshape(-1, 3)
    scene_of_ray = torch.arange(bsz, device=dev).repeat_interleave(n_pix)
    t_obj = torch.full((bsz * n_pix,), math.inf, device=dev)
    hit = torch.zeros(bsz * n_pix, dtype=torch.bool, device=dev)
    normal = torch.zeros(bsz * n_pix, 3, device=dev)
    for k in scenes.class_id.unique().tolist():
        rays = torch.nonzero((scenes.class_id == k)[scene_of_ray]).squeeze(1)
        sdf = SHAPE_CLASSES[k].sdf
        prm = scenes.shape_params[scene_of_ray[rays]]
        t_k, hit_k = _sphere_trace(sdf, o_obj[rays], d_obj[rays], prm, max_steps)
        t_obj[rays], hit[rays] = t_k, hit_k
        h = rays[hit_k]
        normal[h] = _normals(sdf, o_obj[h] + t_obj[h, None] * d_obj[h], prm[hit_k])

    depth = torch.where(hit, t_obj * scenes.scale[scene_of_ray], torch.full_like(t_obj, far))
    if background == "plain":
        rgb = torch.tensor(plain_color, device=dev).expand(bsz * n_pix, 3).clone()
    else:
        rgb = background_color(scenes, dirs).reshape(-1, 3)
    h = torch.nonzero(hit).squeeze(1)
    s = scene_of_ray[h]
    p_obj = o_obj[h] + t_obj[h, None] * d_obj[h]
    w = texture_weight(scenes, p_obj, s)[:, None]
    albedo = (1 - w) * scenes.color_a[s] + w * scenes.color_b[s]
    light_obj = (scenes.light_dir[:, None] @ rot).squeeze(1)[s]  # world -> object frame
    lambert = (normal[h] * light_obj).sum(-1).clamp(min=0)
    amb = scenes.ambient[s]
    rgb[h] = albedo * (amb + (1 - amb) * lambert)[:, None]
    rgb = rgb.reshape(bsz, resolution, resolution, 3).permute(0, 3, 1, 2).clamp(0, 1)
    depth = depth.reshape(bsz, 1, resolution, resolution).clamp(near, far)
    return rgb.contiguous(), depth
