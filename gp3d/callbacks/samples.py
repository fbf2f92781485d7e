"""Fixed-latent sample grids from the EMA generator, saved and logged (videos: ``video.py``)."""

from pathlib import Path

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from gp3d.callbacks.interval import KimgIntervalCallback
from gp3d.callbacks.video import log_to_wandb
from gp3d.inference.trajectories import mean_camera, yaw_offsets
from gp3d.utils.media import depth_to_image, make_grid, save_image


class SampleLogger(KimgIntervalCallback):
    """Every ``every_kimg`` (and at the end) renders fixed latents from several cameras.

    Writes ``samples/kimgXXXXXX.png`` (rows: samples; columns: RGB views then depth views) into
    the run folder, and logs it to W&B when a WandbLogger is attached. Cameras are deterministic
    yaw offsets around the prior's centre and bypass the camera generator, like the original's
    training snapshots (P8). Turntable videos come from :class:`gp3d.callbacks.video.VideoLogger`.

    Args:
        every_kimg: interval; 0 = only at the end of training.
        num_samples: latents in the grid. views: yaw offsets (radians) of the grid's columns.
        resolution: render size (None = the generator's image resolution).
        seed: seed of the fixed latents.
    """

    def __init__(
        self,
        every_kimg: float = 100.0,
        num_samples: int = 8,
        views: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5),
        resolution: int | None = None,
        seed: int = 0,
        at_train_end: bool = True,
    ) -> None:
        self.every_kimg, self.num_samples, self.views = every_kimg, num_samples, list(views)
        self.resolution, self.seed, self.at_train_end = resolution, seed, at_train_end
        self.last_paths: list[Path] = []

    def _latents(self, pl_module: LightningModule, n: int):
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(n, pl_module.G.z_dim, generator=gen).to(pl_module.device)
        c_dim = pl_module.G.c_dim
        c = (
            torch.eye(c_dim, device=pl_module.device)[torch.arange(n) % c_dim]
            if c_dim > 0
            else None
        )
        return z, c

    def _render(self, pl_module, z, c, cams, res):
        G = pl_module.G_ema
        rgbs, depths = [], []
        for cam in cams:
            out = pl_module.sample(
                z, c, camera=cam, resolution=res, use_camera_generator=False, adapt_depth=False
            )
            rgbs.append(out.rgb)
            depths.append(
                depth_to_image(out.depth, G.renderer.near, G.renderer.far).expand_as(out.rgb)
            )
        return rgbs, depths

    @rank_zero_only
    def render_and_save(self, trainer: Trainer, pl_module: LightningModule, tag: str) -> list[Path]:
        was_training = pl_module.G_ema.training
        pl_module.G_ema.eval()
        out_dir = Path(trainer.default_root_dir) / "samples"
        res = self.resolution or pl_module.G_ema.img_resolution
        z, c = self._latents(pl_module, self.num_samples)
        base = mean_camera(pl_module.G_ema.camera_prior, self.num_samples, pl_module.device)
        # the ray jitter from the seed in a forked RNG: the same jitter at every interval, and
        # rank 0's training RNG stream is not shifted by rendering previews
        device = torch.device(pl_module.device)
        forked = [device] if device.type != "cpu" else []
        with torch.random.fork_rng(devices=forked, device_type=device.type if forked else "cuda"):
            torch.manual_seed(self.seed)
            rgbs, depths = self._render(pl_module, z, c, yaw_offsets(base, self.views), res)
        cells = torch.stack(rgbs + depths, dim=1).flatten(0, 1)  # [N * 2V, 3, H, W], sample-major
        paths = [save_image(make_grid(cells, nrow=2 * len(self.views)), out_dir / f"{tag}.png")]
        pl_module.G_ema.train(was_training)
        if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
            import wandb

            log_to_wandb(trainer, {"samples/grid": wandb.Image(str(paths[0]))})
        self.last_paths = paths
        return paths

    def fire(self, trainer: Trainer, pl_module: LightningModule, tag: str) -> None:
        self.render_and_save(trainer, pl_module, tag)
