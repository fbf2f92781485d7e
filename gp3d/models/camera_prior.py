"""The camera prior: a typed description of the distribution prior cameras are drawn from.

Spec 3.4. Each free camera field gets a :class:`ParamDist`. :class:`CameraPrior` turns them into
a sampler of :class:`~gp3d.types.CameraParams` plus the per-field box ``bounds()`` the camera
generator normalises with and squashes into (spec 4.2).

Hydra: every field argument accepts a ``ParamDist``, a plain mapping with the same keys (what a
nested YAML dict without ``_target_`` becomes), or a bare number (a constant), e.g.::

    _target_: gp3d.models.camera_prior.CameraPrior
    yaw: {dist: uniform, min: -1.57, max: 1.57}
    radius: 1.0
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from gp3d.models.camera import PITCH_EPS
from gp3d.types import CAMERA_FIELDS, CameraParams

DISTS = ("uniform", "normal", "truncnorm", "spherical_uniform", "static")
PITCH_FIELDS = ("pitch", "la_pitch")  # polar angles: clamped away from the poles (spec 3.3)
SPHERICAL_V_EPS = 1e-5  # spherical_uniform clamps v = pitch / pi to [eps, 1 - eps] (spec 3.4)
NORM_EPS = 1e-8  # denominator guard of the box normalisation (spec 4.2)


@dataclass(frozen=True)
class ParamDist:
    """The distribution of one scalar camera field.

    - ``uniform``: U(min, max).
    - ``normal``: N(mean, std), clamped to [min, max] where those are given. std = 0 is a
      constant (the original's way of fixing the radius).
    - ``truncnorm``: N(mean, std) truncated to [min, max] (inverse CDF, no scipy).
    - ``spherical_uniform``: for a polar angle, v ~ U(min/pi, max/pi) clamped to
      [1e-5, 1 - 1e-5], then pitch = arccos(1 - 2v) (spec 3.4), which is uniform on the sphere
      for the full range [0, pi]. For any other field it is U(min, max).
    - ``static``: the constant ``mean``.
    """

    dist: str = "uniform"
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float = 0.0

    def __post_init__(self) -> None:
        if self.dist not in DISTS:
            raise ValueError(f"unknown camera distribution {self.dist!r}; expected one of {DISTS}")
        for name in ("min", "max", "mean", "std"):  # YAML may give ints
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        if self.dist in ("uniform", "truncnorm", "spherical_uniform") and (
            self.min is None or self.max is None
        ):
            raise ValueError(f"a {self.dist} camera distribution needs min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if self.dist in ("normal", "truncnorm", "static") and self.mean is None:
            raise ValueError(f"a {self.dist} camera distribution needs mean")
        if self.std < 0:
            raise ValueError(f"std must be >= 0, got {self.std}")

    def bounds(self) -> tuple[float, float]:
        """The box holding every sample; (-inf, inf) for an unclamped normal with std > 0."""
        if self.dist == "static":
            return self.mean, self.mean
        if self.dist == "normal":
            lo = -math.inf if self.min is None else self.min
            hi = math.inf if self.max is None else self.max
            if self.std == 0:  # a constant, clamped like the samples
                c = min(max(self.mean, lo), hi)
                return c, c
            return lo, hi
        return self.min, self.max

    def center(self) -> float:
        """The "mean" used by the force-mean term (spec 4.4): (min + max)/2 for box dists."""
        if self.dist in ("uniform", "spherical_uniform"):
            return (self.min + self.max) / 2
        return self.mean


def as_param_dist(value: "ParamDist | Mapping | float | int") -> ParamDist:
    """Accept a ParamDist, a mapping of its fields (e.g. a Hydra DictConfig) or a constant."""
    if isinstance(value, ParamDist):
        return value
    if isinstance(value, (int, float)):
        return ParamDist(dist="static", mean=float(value))
    if isinstance(value, Mapping):
        return ParamDist(**{str(k): v for k, v in value.items()})
    raise TypeError(f"cannot build a ParamDist from {type(value).__name__}")


def spherical_pitch(v: torch.Tensor) -> torch.Tensor:
    """pitch = arccos(1 - 2v) with v clamped to [1e-5, 1 - 1e-5] (spec 3.4)."""
    return torch.arccos(1 - 2 * v.clamp(SPHERICAL_V_EPS, 1 - SPHERICAL_V_EPS))


def _ndtr(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def sample_param(
    d: ParamDist,
    n: int,
    polar: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` samples [n] of one field. ``polar`` marks a pitch (for spherical_uniform)."""

    def rand() -> torch.Tensor:
        return torch.rand(n, device=device, dtype=dtype, generator=generator)

    def randn() -> torch.Tensor:
        return torch.randn(n, device=device, dtype=dtype, generator=generator)

    if d.dist == "static":
        return torch.full((n,), d.mean, device=device, dtype=dtype)
    if d.dist == "uniform" or (d.dist == "spherical_uniform" and not polar):
        return d.min + (d.max - d.min) * rand()
    if d.dist == "spherical_uniform":
        return spherical_pitch((d.min + (d.max - d.min) * rand()) / math.pi)
    lo, hi = d.bounds()
    if d.dist == "normal" or d.std == 0:
        return (d.mean + d.std * randn()).clamp(lo, hi)
    # truncnorm by inverse CDF. Work on the side of the mean nearer the interval so the uniform
    # draw stays away from 1, where float32 would lose the tail (a -> -b, b -> -a, x -> -x).
    a, b = (lo - d.mean) / d.std, (hi - d.mean) / d.std
    sign = -1.0 if a + b > 0 else 1.0
    a, b = sorted((sign * a, sign * b))
    cdf_a, cdf_b = _ndtr(a), _ndtr(b)
    u = (cdf_a + (cdf_b - cdf_a) * rand()).clamp(min=torch.finfo(dtype).tiny)
    x = d.mean + sign * d.std * torch.special.ndtri(u)
    return x.clamp(lo, hi)


DEFAULT_PRIOR = {  # the original's `camera: uniform` preset, used for every dataset (spec 3.4)
    "yaw": ParamDist("uniform", min=-1.57, max=1.57),
    "pitch": ParamDist("uniform", min=0.785398, max=2.356194),
    "radius": ParamDist("static", mean=1.0),  # the original's "normal, std 0"
    "fov": ParamDist("uniform", min=10.0, max=45.0),
    "la_yaw": ParamDist("spherical_uniform", min=-math.pi, max=math.pi),
    "la_pitch": ParamDist("spherical_uniform", min=0.0, max=math.pi),
    "la_radius": ParamDist("uniform", min=0.0, max=0.2),  # uniform in radius, not in volume
}

DistLike = ParamDist | Mapping | float


class CameraPrior(nn.Module):
    """Sampler of prior cameras (spec 3.4). Roll is always 0.

    The per-field box, its centre and the normalisation live in non-persistent buffers, so the
    prior follows ``.to(device)`` with the model but never overrides the config on reload.
    """

    def __init__(
        self,
        yaw: DistLike = DEFAULT_PRIOR["yaw"],
        pitch: DistLike = DEFAULT_PRIOR["pitch"],
        radius: DistLike = DEFAULT_PRIOR["radius"],
        fov: DistLike = DEFAULT_PRIOR["fov"],
        la_yaw: DistLike = DEFAULT_PRIOR["la_yaw"],
        la_pitch: DistLike = DEFAULT_PRIOR["la_pitch"],
        la_radius: DistLike = DEFAULT_PRIOR["la_radius"],
    ) -> None:
        super().__init__()
        given = dict(yaw=yaw, pitch=pitch, radius=radius, fov=fov, la_yaw=la_yaw)
        given.update(la_pitch=la_pitch, la_radius=la_radius, roll=ParamDist("static", mean=0.0))
        self.dists: dict[str, ParamDist] = {k: as_param_dist(given[k]) for k in CAMERA_FIELDS}
        for k in PITCH_FIELDS:
            self._check_spherical(k, self.dists[k])
        lo, hi = zip(*(self.dists[k].bounds() for k in CAMERA_FIELDS))
        self.register_buffer("lo", torch.tensor(lo), persistent=False)
        self.register_buffer("hi", torch.tensor(hi), persistent=False)
        center = [self.dists[k].center() for k in CAMERA_FIELDS]
        self.register_buffer("center", torch.tensor(center), persistent=False)

    @staticmethod
    def _check_spherical(name: str, d: ParamDist) -> None:
        # arccos(1 - 2 pitch/pi) moves angles toward pi/2, so a box that does not contain pi/2
        # would be left by its own samples; refuse it rather than silently clamp.
        if d.dist != "spherical_uniform":
            return
        lo, hi = (
            spherical_pitch(torch.tensor([d.min, d.max], dtype=torch.float64) / math.pi)
        ).tolist()
        if lo < d.min - 1e-12 or hi > d.max + 1e-12:
            raise ValueError(
                f"{name}: spherical_uniform over [{d.min}, {d.max}] samples [{lo:.4f}, {hi:.4f}], "
                "outside its box; the range must contain pi/2"
            )

    @property
    def device(self) -> torch.device:
        return self.lo.device

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo [8], hi [8]) in CAMERA_FIELDS order; every sample lies inside."""
        return self.lo, self.hi

    def mean_angles(self) -> torch.Tensor:
        """[3] prior (yaw, pitch, roll) centre for the force-mean term: (0, pi/2, 0) by default."""
        return self.center[:3]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 8] physical values -> (x - min) / (max - min + 1e-8) per field (spec 4.2)."""
        return normalize_to_box(x, self.lo, self.hi)

    def denormalize(self, u: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize` (without the 1e-8): u (max - min) + min."""
        return denormalize_from_box(u, self.lo, self.hi)

    def sample(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        frontal: bool = False,
    ) -> CameraParams:
        """Draw prior cameras. ``frontal`` fixes yaw = 0, pitch = pi/2 (the NFS metric, spec 8.2);
        fov and the look-at point are still sampled."""
        device = self.device if device is None else torch.device(device)
        out = {}
        for k in CAMERA_FIELDS:
            v = sample_param(
                self.dists[k], batch_size, k in PITCH_FIELDS, device, self.lo.dtype, generator
            )
            if k in PITCH_FIELDS:  # cam2world is degenerate at the poles (spec 3.3)
                v = v.clamp(PITCH_EPS, math.pi - PITCH_EPS)
            out[k] = v
        if frontal:
            out["yaw"] = torch.zeros_like(out["yaw"])
            out["pitch"] = torch.full_like(out["pitch"], math.pi / 2)
        return CameraParams(**out)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={d}" for k, d in self.dists.items() if k != "roll")


def normalize_to_box(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(x - lo) / (hi - lo + 1e-8), broadcast over the trailing field dimension (spec 4.2)."""
    return (x - lo) / (hi - lo + NORM_EPS)


def denormalize_from_box(u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """u (hi - lo) + lo: maps [0, 1] onto the box."""
    return u * (hi - lo) + lo
