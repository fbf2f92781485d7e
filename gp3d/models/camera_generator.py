"""The camera generator ("camera adaptor"): a learned map from prior to posterior cameras.

Spec 4.1-4.2. Two small equalized-lr MLPs (lr_multiplier 0.1): ``origin_adaptor`` sees the
prior origin and the class; ``look_at_adaptor`` sees the origin adaptor's logits, the prior
fov / look-at, the latent z and the class. Outputs are squashed by a sigmoid into the prior's box
(spec 4.2), so the posterior has the prior's support. It is *not* initialised to the identity
(P14): at the start the posterior is a random squashed function of the prior.
"""

import torch
from torch import nn

from gp3d.models.camera import PITCH_EPS
from gp3d.models.camera_prior import CameraPrior, normalize_to_box
from gp3d.models.layers import FullyConnected, normalize_2nd_moment
from gp3d.types import CAMERA_FIELDS, CameraParams

YAW, PITCH, ROLL, RADIUS, FOV, LA_YAW, LA_PITCH, LA_RADIUS = range(8)


class ParamsAdaptor(nn.Module):
    """FC(params -> hid) [+ FC(z -> embed), 2nd-moment norm] [+ FC(c -> embed), 2nd-moment norm],
    then FC(-> hid, softplus), FC(-> out, linear). Spec 4.1; z_dim / c_dim 0 drop the branch."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        z_dim: int = 0,
        c_dim: int = 0,
        hid_dim: int = 256,
        embed_dim: int = 16,
        lr_multiplier: float = 0.1,
    ) -> None:
        super().__init__()

        def fc(i: int, o: int, act: str) -> FullyConnected:
            return FullyConnected(i, o, activation=act, lr_multiplier=lr_multiplier)

        self.project_params = fc(in_dim, hid_dim, "softplus")
        self.project_z = fc(z_dim, embed_dim, "softplus") if z_dim > 0 else None
        self.project_c = fc(c_dim, embed_dim, "softplus") if c_dim > 0 else None
        main_in = hid_dim + embed_dim * ((z_dim > 0) + (c_dim > 0))
        self.main = nn.Sequential(fc(main_in, hid_dim, "softplus"), fc(hid_dim, out_dim, "linear"))

    def forward(
        self, params: torch.Tensor, z: torch.Tensor | None = None, c: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = [self.project_params(params)]
        for proj, cond, name in ((self.project_z, z, "z"), (self.project_c, c, "c")):
            if proj is not None:
                if cond is None:
                    raise ValueError(f"this adaptor is conditioned on {name}, got None")
                h.append(normalize_2nd_moment(proj(cond.to(params.dtype))))
        return self.main(torch.cat(h, dim=1))


class CameraGenerator(nn.Module):
    """Prior cameras -> posterior cameras inside the prior's box (spec 4.1-4.2).

    Args:
        prior: the camera prior, or its ``bounds()`` (lo [8], hi [8]) in CAMERA_FIELDS order.
        c_dim: class-conditioning size (0 = unconditional).
        z_dim: latent size; only the look-at adaptor sees z.
        adjust_*: a field that is not adjusted keeps its prior value. Defaults as in the
            original: angles, fov and look-at learned; radius fixed, so it stays 1.
        residual: add the normalised prior to the logits before the sigmoid (off in 3DGP).
    """

    def __init__(
        self,
        prior: CameraPrior | tuple[torch.Tensor, torch.Tensor],
        c_dim: int,
        z_dim: int,
        hid_dim: int = 256,
        embed_dim: int = 16,
        lr_multiplier: float = 0.1,
        adjust_angles: bool = True,
        adjust_radius: bool = False,
        adjust_fov: bool = True,
        adjust_look_at: bool = True,
        residual: bool = False,
    ) -> None:
        super().__init__()
        lo, hi = prior.bounds() if isinstance(prior, CameraPrior) else prior
        lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
        if lo.shape != (8,) or hi.shape != (8,):
            raise ValueError(f"prior bounds must be two [8] tensors, got {lo.shape}, {hi.shape}")
        adjust = torch.tensor(
            [adjust_angles] * 3 + [adjust_radius, adjust_fov] + [adjust_look_at] * 3
        )
        # Every adjusted field is normalised with, and squashed into, its box (spec 4.2).
        bad = [
            k
            for k, a, low, high in zip(CAMERA_FIELDS, adjust, lo, hi)
            if a and not (low.isfinite() and high.isfinite())
        ]
        if bad:
            raise ValueError(f"adjusted camera fields need a finite prior box (min/max): {bad}")
        self.c_dim, self.z_dim, self.residual = c_dim, z_dim, residual
        self.register_buffer("lo", lo, persistent=False)
        self.register_buffer("hi", hi, persistent=False)
        self.register_buffer("adjust", adjust, persistent=False)
        # Output box: the prior box, with a 1e-5 margin on the origin pitch (cam2world is
        # degenerate at the poles, spec 3.3). P10 fix: the look-at radius uses its *own* min
        # (the original used the look-at pitch min there; both are 0 in every config).
        margin = min(PITCH_EPS, float(hi[PITCH] - lo[PITCH]) / 2)
        out_lo, out_hi = lo.clone(), hi.clone()
        out_lo[PITCH] += margin
        out_hi[PITCH] -= margin
        self.register_buffer("out_lo", out_lo, persistent=False)
        self.register_buffer("out_hi", out_hi, persistent=False)
        kw = dict(hid_dim=hid_dim, embed_dim=embed_dim, lr_multiplier=lr_multiplier)
        self.origin_adaptor = ParamsAdaptor(4, 4, z_dim=0, c_dim=c_dim, **kw)  # no z (spec 4.1)
        self.look_at_adaptor = ParamsAdaptor(8, 4, z_dim=z_dim, c_dim=c_dim, **kw)

    def forward(
        self, cam: CameraParams, z: torch.Tensor, c: torch.Tensor | None = None
    ) -> CameraParams:
        """Posterior cameras for prior cameras ``cam``, latents z [B, z_dim], classes c [B, c_dim]."""
        x = cam.to_tensor().to(self.lo.dtype)  # [B, 8] physical units
        xn = normalize_to_box(x, self.lo, self.hi)
        c = c if self.c_dim > 0 else None
        # Origin: normalised yaw and pitch, raw roll and radius (spec 4.2).
        origin_in = torch.stack([xn[:, YAW], xn[:, PITCH], x[:, ROLL], x[:, RADIUS]], dim=1)
        origin = self.origin_adaptor(origin_in, c=c)
        if self.residual:
            origin = origin + xn[:, :4]
        # Look-at: the origin logits (pre-sigmoid) interleaved with the normalised prior fov and
        # look-at, in the original's order (yaw, pitch, roll, fov, radius, la_yaw, la_pitch, la_r).
        look_in = torch.cat(
            [origin[:, :3], xn[:, FOV : FOV + 1], origin[:, 3:4], xn[:, LA_YAW:]], dim=1
        )
        look = self.look_at_adaptor(look_in, z=z if self.z_dim > 0 else None, c=c)
        if self.residual:
            look = look + xn[:, FOV:]
        logits = torch.cat([origin, look], dim=1)  # [B, 8] in CAMERA_FIELDS order
        post = torch.sigmoid(logits) * (self.out_hi - self.out_lo) + self.out_lo
        post = post.clamp(self.out_lo, self.out_hi)  # lo + (hi - lo) can round past hi by an ulp
        # Roll is zeroed (x 0 keeps it in the graph). Radius is squashed into its box like the
        # others; in the original it stays raw, but it is never adjusted there (spec 4.2).
        post = torch.cat([post[:, :ROLL], logits[:, ROLL : ROLL + 1] * 0, post[:, RADIUS:]], dim=1)
        # A field that is not adjusted keeps its prior value; "+ 0 x new" keeps the graph whole.
        post = torch.where(self.adjust, post, x + 0 * post)
        return CameraParams.from_tensor(post)

    @torch.no_grad()
    def mean_camera(
        self, prior: CameraPrior, c: torch.Tensor | None = None, n: int = 1024
    ) -> CameraParams:
        """The mean of ``n`` posterior samples as a single camera (videos, spec 4.3).

        ``c`` is a [1, c_dim] or [n, c_dim] class condition (repeated to n); z ~ N(0, I).
        """
        device = self.lo.device
        z = torch.randn(n, self.z_dim, device=device)
        if c is not None and c.shape[0] == 1:
            c = c.expand(n, -1)
        post = self(prior.sample(n, device=device), z, c).to_tensor()
        return CameraParams.from_tensor(post.mean(dim=0, keepdim=True))

    def extra_repr(self) -> str:
        flags = "".join(str(int(a)) for a in self.adjust.tolist())
        return f"c_dim={self.c_dim}, z_dim={self.z_dim}, adjust={flags}, residual={self.residual}"
