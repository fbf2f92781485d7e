"""Turntable videos of the EMA generator for fixed seeds and classes, saved and logged to W&B."""

import math
from pathlib import Path

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from gp3d.callbacks.interval import KimgIntervalCallback
from gp3d.inference import sampling as inference
from gp3d.inference.trajectories import front_circle, mean_camera, posterior_mean_camera
from gp3d.types import CameraParams
from gp3d.utils.media import VideoWriter, colorize_depth, make_grid

BASE_CAMERAS = ("posterior_mean", "prior_center")


def log_to_wandb(trainer: Trainer, payload: dict) -> None:
    """Log media to every attached WandbLogger (none attached: nothing happens)."""
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})


class VideoLogger(KimgIntervalCallback):
    """Every ``every_kimg`` (and at the end of training) renders a front-circle turntable
    (spec 8.4: 32 frames in training videos, 25 fps, h264 crf 20) of fixed latents, one per seed,
    with fixed classes, and writes one grid video ``<subdir>/kimgNNNNNN.mp4`` (RGB | colour-mapped
    depth side by side per sample) into the run folder; logs it to W&B as ``samples/video``.

    Args:
        every_kimg: interval in kimg; 0 = only at the end of training.
        seeds: one latent per seed (the same latents at every interval).
        classes: class index per seed (a single value is broadcast); None = seed position
            modulo the number of classes. Ignored for an unconditional generator.
        num_frames, fps, crf: video settings.
        resolution: render size (None = the generator's image resolution).
        mode: ``rgb``, ``depth`` or ``both``.
        base_camera: ``posterior_mean`` (mean of ``camera_samples`` posterior cameras per class,
            as the inference videos) or ``prior_center`` (the centre of the prior box).
        truncation_psi: toward the class-wise mean w (1 = none).
        render_seed: ray-jitter seed (identical jitter at every interval: changes are the model's).
    """

    final_in_fast_dev_run = False  # a video per fast_dev_run would only slow the pipeline tests

    def __init__(
        self,
        every_kimg: float = 100.0,
        seeds: tuple[int, ...] = (0, 1, 2, 3),
        classes: tuple[int, ...] | int | None = None,
        num_frames: int = 32,
        fps: int = 25,
        crf: int | None = 20,
        resolution: int | None = None,
        mode: str = "both",
        depth_colormap: str = "turbo",
        base_camera: str = "posterior_mean",
        camera_samples: int = 1024,
        truncation_psi: float = 1.0,
        render_seed: int = 0,
        subdir: str = "samples",
        at_train_end: bool = True,
    ) -> None:
        if mode not in ("rgb", "depth", "both"):
            raise ValueError(f"mode={mode!r}; choose rgb, depth or both")
        if base_camera not in BASE_CAMERAS:
            raise ValueError(f"base_camera={base_camera!r}; choose one of {BASE_CAMERAS}")
        self.seeds = [int(s) for s in seeds]
        if not self.seeds or num_frames < 1:
            raise ValueError("VideoLogger needs at least one seed and one frame")
        if classes is not None and not isinstance(classes, int):
            classes = [int(c) for c in classes]
            if len(classes) not in (1, len(self.seeds)):
                raise ValueError(
                    f"got {len(classes)} classes for {len(self.seeds)} seeds: give one class per "
                    "seed, a single class for all, or null"
                )
        self.classes = classes
        self.every_kimg, self.num_frames, self.fps, self.crf = every_kimg, num_frames, fps, crf
        self.resolution, self.mode, self.depth_colormap = resolution, mode, depth_colormap
        self.base_camera, self.camera_samples = base_camera, camera_samples
        self.truncation_psi, self.render_seed = truncation_psi, render_seed
        self.subdir, self.at_train_end = subdir, at_train_end
        self.last_path: Path | None = None

    def labels(self, c_dim: int) -> list[int] | None:
        if c_dim == 0:
            return None
        if self.classes is None:
            labels = [i % c_dim for i in range(len(self.seeds))]
        elif isinstance(self.classes, int):
            labels = [self.classes] * len(self.seeds)
        else:
            labels = self.classes * (len(self.seeds) if len(self.classes) == 1 else 1)
        bad = [c for c in labels if not 0 <= c < c_dim]
        if bad:
            raise ValueError(f"classes {bad} are out of range for a generator with {c_dim}")
        return labels

    def _base(self, G, onehot: torch.Tensor | None, n: int) -> CameraParams:
        if self.base_camera == "prior_center":
            return mean_camera(G.camera_prior, n, G.camera_prior.device)
        if onehot is None:
            cam = posterior_mean_camera(G, None, self.camera_samples)
            return CameraParams.from_tensor(cam.to_tensor().expand(n, -1))
        return posterior_mean_camera(G, onehot, self.camera_samples)

    @torch.no_grad()
    def render(self, G) -> list[torch.Tensor]:
        """The video's frames [3, H', W'] in [-1, 1] (one grid of all seeds per frame)."""
        device = G.camera_prior.device
        labels = self.labels(G.c_dim)
        z = inference.latents(self.seeds, G.z_dim, device)
        onehot = inference.one_hot(labels, G.c_dim, len(self.seeds), device)
        ws = inference.truncated_ws(G, z, onehot, self.truncation_psi)
        planes = G.synthesis(ws, noise_mode="const")
        res = self.resolution or G.img_resolution
        near, far = G.renderer.near, G.renderer.far
        frames = []
        for cam in front_circle(
            self._base(G, onehot, len(self.seeds)), self.num_frames, bounds=G.camera_prior.bounds()
        ):
            out = inference.render_planes(G, planes, cam, res, seed=self.render_seed)
            rgb = out.rgb.clamp(-1, 1)
            depth = colorize_depth(out.depth, near, far, self.depth_colormap)
            cells = {"rgb": rgb, "depth": depth, "both": torch.cat([rgb, depth], dim=-1)}
            grid = make_grid(cells[self.mode].cpu(), nrow=math.ceil(math.sqrt(len(self.seeds))))
            frames.append(grid)
        return frames

    @rank_zero_only
    def render_and_save(self, trainer: Trainer, pl_module: LightningModule, tag: str) -> Path:
        G = pl_module.G_ema
        was_training = G.training
        G.eval()
        try:
            path = Path(trainer.default_root_dir) / self.subdir / f"{tag}.mp4"
            with VideoWriter(path, self.fps, self.crf) as writer:
                for frame in self.render(G):
                    writer.append(frame)
                path = writer.close()
        finally:
            G.train(was_training)
        if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
            import wandb

            log_to_wandb(
                trainer,
                {
                    "samples/video": wandb.Video(str(path), format=path.suffix[1:]),
                    "progress/kimg": pl_module.nimg.item() / 1000,
                },
            )
        self.last_path = path
        return path

    def fire(self, trainer: Trainer, pl_module: LightningModule, tag: str) -> None:
        self.render_and_save(trainer, pl_module, tag)
