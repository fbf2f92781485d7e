"""The 3D generator: mapping -> tri-plane synthesis -> MLP decoder -> volume rendering (spec 1, 2).

Optional parts that turn the EpiGRAF baseline into 3DGP: a learned camera generator on top of
the camera prior (spec 4) and a depth adaptor for what the discriminator sees (spec 5.2).
"""

import torch
from torch import nn

from gp3d.models.camera import generate_rays
from gp3d.models.camera_generator import CameraGenerator
from gp3d.models.camera_prior import CameraPrior
from gp3d.models.depth_adaptor import DepthAdaptor
from gp3d.models.mapping import MappingNetwork
from gp3d.models.renderer import VolumeRenderer
from gp3d.models.synthesis import TriPlaneSynthesis
from gp3d.models.triplane import TriPlaneDecoder, sample_triplanes
from gp3d.types import CameraParams, PatchParams, RenderOutput


class Generator(nn.Module):
    """Composes the generator's parts; every part is built by the caller (Hydra ``_target_``).

    Args:
        mapping: (z, c) -> w, broadcast to ``synthesis.num_ws`` styles.
        synthesis: w -> tri-planes [B, 3, C, R, R].
        decoder: plane features -> raw RGB and raw density.
        renderer: volume renderer (near/far, samples per ray, chunking).
        camera_prior: the (wide) prior cameras are drawn from.
        camera_generator: optional learned prior -> posterior camera map (3DGP); None = EpiGRAF.
        depth_adaptor: optional depth adaptor (3DGP); None = depth linearly mapped to [-1, 1].
        img_resolution: resolution of a full render (the dataset resolution).
        cube_scale: half side of the scene box the tri-planes cover (0.5).
    """

    def __init__(
        self,
        mapping: MappingNetwork,
        synthesis: TriPlaneSynthesis,
        decoder: TriPlaneDecoder,
        renderer: VolumeRenderer,
        camera_prior: CameraPrior,
        camera_generator: CameraGenerator | None = None,
        depth_adaptor: DepthAdaptor | None = None,
        img_resolution: int = 256,
        cube_scale: float = 0.5,
    ) -> None:
        super().__init__()
        self.mapping, self.synthesis, self.decoder = mapping, synthesis, decoder
        self.renderer, self.camera_prior = renderer, camera_prior
        self.camera_generator, self.depth_adaptor = camera_generator, depth_adaptor
        self.img_resolution, self.cube_scale = img_resolution, cube_scale
        self.z_dim, self.c_dim = mapping.z_dim, mapping.c_dim

    # --- building blocks -------------------------------------------------------------------
    def map(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        update_emas: bool = False,
        w_mean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(z, c) -> ws [B, num_ws, w_dim]; truncation toward ``w_mean`` [B, w_dim] or w_avg."""
        ws = self.mapping(z, c, truncation_psi, update_emas, w_mean)
        if ws.dim() == 2:
            ws = ws[:, None].expand(-1, self.synthesis.num_ws, -1)
        return ws

    def field(self, planes: torch.Tensor, views: int = 1):
        """A radiance-field callable over world points for the renderer.

        ``views`` > 1: the points come from B * views renders in the latent-major layout (row
        b * views + v is view v of latent b), so those of one latent are contiguous and are
        sampled from its planes in one call, without copying the planes per view.
        """

        def query(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if views == 1:
                return self.decoder(sample_triplanes(planes, points, self.cube_scale))
            rows, m, _ = points.shape
            per_latent = points.reshape(planes.shape[0], views * m, 3)
            feats = sample_triplanes(planes, per_latent, self.cube_scale)
            return self.decoder(feats.reshape(rows, m, feats.shape[-1]))

        return query

    def density(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Raw (pre-activation) density [B, M, 1] at world points [B, M, 3] (meshes, spec 8.3)."""
        return self.field(planes)(points)[1]

    def cameras(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        prior: CameraParams | None = None,
        use_camera_generator: bool = True,
        frontal: bool = False,
    ) -> CameraParams:
        """Prior sample (or the given prior cameras) passed through the camera generator if any."""
        if prior is None:
            prior = self.camera_prior.sample(z.shape[0], device=z.device, frontal=frontal)
        if self.camera_generator is not None and use_camera_generator:
            return self.camera_generator(prior, z, c)
        return prior

    def normalized_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """What D sees as fake depth: the adaptor's output, or a linear map of [near, far] to [-1, 1]."""
        if self.depth_adaptor is not None:
            return self.depth_adaptor(depth)
        near, far = self.renderer.near, self.renderer.far
        return (depth - near) / (far - near) * 2.0 - 1.0

    # --- full forward ----------------------------------------------------------------------
    def render(
        self,
        planes: torch.Tensor,
        camera: CameraParams,
        resolution: int | None = None,
        patch: PatchParams | None = None,
        density_noise_std: float = 0.0,
        cut_quantile: float | None = None,
        steps_multiplier: int = 1,
        far: float | None = None,
        views: int = 1,
    ) -> RenderOutput:
        """Render tri-planes from cameras: a full image, or a patch at ``resolution``^2 pixels.

        ``views``: cameras (and patches) hold ``views`` rows per latent, latent-major (see
        :meth:`field`); the output has B * views images.
        """
        if camera.batch_size != planes.shape[0] * views:
            raise ValueError(
                f"{planes.shape[0]} latents x {views} views need {planes.shape[0] * views} "
                f"cameras, got {camera.batch_size}"
            )
        res = resolution or self.img_resolution
        origins, dirs = generate_rays(camera, res, patch)
        rgb, depth, opacity = self.renderer(
            self.field(planes, views),
            origins,
            dirs,
            density_noise_std,
            cut_quantile,
            steps_multiplier,
            far,
        )
        to_img = lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], res, res)  # noqa: E731
        return RenderOutput(
            rgb=to_img(rgb), depth=to_img(depth), opacity=to_img(opacity), camera=camera
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        camera: CameraParams | None = None,
        patch: PatchParams | None = None,
        resolution: int | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "random",
        density_noise_std: float = 0.0,
        update_emas: bool = False,
        use_camera_generator: bool = True,
        adapt_depth: bool = True,
        truncation_w_mean: torch.Tensor | None = None,
        **render_kwargs,
    ) -> RenderOutput:
        """Generate and render. ``camera`` is a *prior* sample (None: draw one); the camera
        generator, when present and enabled, maps it to the posterior that is rendered.
        ``truncation_w_mean`` [B, w_dim]: truncate toward it instead of w_avg."""
        ws = self.map(z, c, truncation_psi, update_emas, truncation_w_mean)
        planes = self.synthesis(ws, noise_mode=noise_mode)
        cam = self.cameras(z, c, camera, use_camera_generator)
        out = self.render(planes, cam, resolution, patch, density_noise_std, **render_kwargs)
        if adapt_depth:
            out.depth_adapted = self.normalized_depth(out.depth)
        return out
