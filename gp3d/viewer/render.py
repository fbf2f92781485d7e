"""What the viewer draws for a view: tri-planes cached per sample, a render per camera.

The synthesis network (mapping + tri-plane generator) runs once per (seed, class, truncation);
moving the camera only re-renders rays through the cached planes, which is what keeps the page
responsive on a CPU.
"""

from dataclasses import dataclass

import numpy as np
import torch

from gp3d.inference import sampling
from gp3d.inference.portable import LoadedGenerator
from gp3d.types import CameraParams
from gp3d.utils.media import colorize_depth, to_uint8


@dataclass(frozen=True)
class Sample:
    seed: int
    class_index: int | None  # None for an unconditional generator
    truncation_psi: float


@dataclass(frozen=True)
class View:
    """Everything an image depends on (hashable: the scheduler compares views)."""

    sample: Sample
    camera: tuple[float, ...]  # the 8 CAMERA_FIELDS of the viewer's pose
    posterior: bool  # pass the pose through the camera generator first (spec 4)
    generation: int = 0  # bumped when the checkpoint is reloaded

    def camera_params(self) -> CameraParams:
        return CameraParams.from_tensor(torch.tensor([self.camera], dtype=torch.float32))


@dataclass
class Frame:
    rgb: np.ndarray  # HxWx3 uint8
    depth: np.ndarray  # HxWx3 uint8 (turbo, near..far)
    depth_m: np.ndarray  # HxW float32 metric depth along the ray
    camera: CameraParams  # the camera rendered (the posterior one in posterior mode)


class SampleRenderer:
    """Renders views of one generator; keeps the planes of the last sample."""

    def __init__(self, gen: LoadedGenerator, steps_multiplier: int = 1) -> None:
        self.gen, self.steps_multiplier = gen, steps_multiplier
        self._key: Sample | None = None
        self._planes: torch.Tensor | None = None

    def check_class(self, class_index: int | None) -> int | None:
        """A valid class for this generator (ValueError naming the range otherwise)."""
        c_dim = self.gen.num_classes
        if c_dim == 0:
            return None
        if class_index is None or not 0 <= int(class_index) < c_dim:
            raise ValueError(
                f"class {class_index} is out of range: this generator has classes 0..{c_dim - 1}"
            )
        return int(class_index)

    def _onehot(self, sample: Sample, device) -> torch.Tensor | None:
        c = self.check_class(sample.class_index)
        return None if c is None else sampling.one_hot([c], self.gen.num_classes, 1, device)

    def latent(self, sample: Sample) -> torch.Tensor:
        return self.gen.latents([sample.seed])

    def planes(self, sample: Sample) -> torch.Tensor:
        if self._key != sample or self._planes is None:
            c = self.check_class(sample.class_index)
            self._planes = self.gen.planes(
                self.latent(sample), None if c is None else [c], sample.truncation_psi
            )
            self._key = sample
        return self._planes

    @torch.no_grad()
    def camera(self, view: View) -> CameraParams:
        """The camera to render: the pose itself, or its posterior under the camera generator."""
        cam = view.camera_params().to(self.gen.device)
        G = self.gen.G
        if not view.posterior or G.camera_generator is None:
            return cam
        z = self.latent(view.sample)
        return G.cameras(z, self._onehot(view.sample, z.device), prior=cam)

    @torch.no_grad()
    def render(self, view: View, resolution: int) -> Frame:
        planes = self.planes(view.sample)
        cam = self.camera(view)
        out = sampling.render_planes(
            self.gen.G, planes, cam, resolution, seed=0, steps_multiplier=self.steps_multiplier
        )
        r = self.gen.G.renderer
        depth_img = colorize_depth(out.depth, r.near, r.far)
        return Frame(
            rgb=to_uint8(out.rgb[0].float().cpu()),
            depth=to_uint8(depth_img[0].float().cpu()),
            depth_m=out.depth[0, 0].float().cpu().numpy(),
            camera=cam.to("cpu"),
        )
