"""What :func:`gp3d.inversion.invert` returns, with novel-view renders and meshes."""

from dataclasses import dataclass, field

import torch

from gp3d.inference import sampling
from gp3d.models.generator import Generator
from gp3d.types import CameraParams, RenderOutput


@dataclass
class InversionResult:
    """A PTI inversion of one image.

    ``generator`` is the tuned copy (eval mode, frozen); ``ws`` [1, num_ws, w_dim] the pivot;
    ``camera`` the camera the image was fit with (after stage-1 camera optimisation, if any);
    ``c`` the one-hot class [1, c_dim] or None; ``rgb`` [1, 3, H, W] / ``depth`` [1, 1, H, W]
    (metric) the final render at the input resolution; ``losses`` one dict per step with
    ``stage`` (1: latent, 2: pivotal tuning), ``step``, ``loss``, ``lpips``, ``l2`` (+ ``depth``,
    ``reg`` when used).
    """

    generator: Generator
    ws: torch.Tensor
    camera: CameraParams
    c: torch.Tensor | None
    rgb: torch.Tensor
    depth: torch.Tensor
    losses: list[dict] = field(default_factory=list)

    @property
    def resolution(self) -> int:
        return self.rgb.shape[-1]

    @torch.no_grad()
    def planes(self) -> torch.Tensor:
        """The reconstruction's tri-planes [1, 3, C, R, R]."""
        return self.generator.synthesis(self.ws, noise_mode="const")

    def render(
        self,
        camera: CameraParams | None = None,
        resolution: int | None = None,
        seed: int = 0,
        steps_multiplier: int = 1,
        far_offset: float = 0.0,
    ) -> RenderOutput:
        """Render the reconstruction from ``camera`` (batch 1; None = the fitted camera) at
        ``resolution`` (None = the input's): novel views of the inverted image."""
        camera = self.camera if camera is None else camera
        return sampling.render_planes(
            self.generator,
            self.planes(),
            camera,
            resolution or self.resolution,
            seed,
            steps_multiplier=steps_multiplier,
            far_offset=far_offset,
        )

    def mesh(self, resolution: int = 128, side: float = 0.3, threshold: float = 25.0, **kwargs):
        """A vertex-coloured trimesh of the reconstruction (spec 8.3 protocol; see
        :func:`gp3d.inference.sampling.mesh_from_planes`)."""
        return sampling.mesh_from_planes(
            self.generator, self.planes(), resolution, side, threshold=threshold, **kwargs
        )
