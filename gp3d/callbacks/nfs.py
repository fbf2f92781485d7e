"""Non-Flatness Score of the EMA generator during training (spec 8.2), logged as val/nfs<N>."""

import torch
import torch.nn.functional as F
from lightning import LightningModule, Trainer

from gp3d.callbacks.interval import KimgIntervalCallback
from gp3d.metrics.nfs import non_flatness_score


@torch.no_grad()
def compute_nfs(
    G,
    num_samples: int = 256,
    resolution: int | None = None,
    batch_size: int = 4,
    cut_quantile: float = 0.5,
    num_bins: int = 64,
    seed: int = 0,
) -> float:
    """NFS of ``G`` (eval mode): frontal prior cameras (yaw 0, pitch pi/2; fov and look-at
    sampled) passed through the camera generator, densities below the per-chunk median zeroed,
    depth clamped to [near, far], 64-bin histogram entropy, exp, mean over images.

    The median is taken per render chunk (``renderer.chunk_rays``), so values depend on the chunk
    size (P16); the original used about 2^24 / (batch * steps * 3) rays per chunk.

    Every random draw (latents, labels, prior fov / look-at, ray jitter, noise, the camera
    generator) comes from ``seed`` inside a forked RNG: the value is reproducible, the same on
    every rank, and the caller's (training) RNG stream is left as it was.
    """
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    forked = [device] if device.type != "cpu" else []
    scores = []
    with torch.random.fork_rng(devices=forked, device_type=device.type if forked else "cuda"):
        torch.manual_seed(seed)
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            z = torch.randn(n, G.z_dim, generator=gen).to(device)
            c = None
            if G.c_dim > 0:
                labels = torch.randint(G.c_dim, (n,), generator=gen)
                c = F.one_hot(labels, G.c_dim).float().to(device)
            prior = G.camera_prior.sample(n, device=device, frontal=True)
            out = G(
                z,
                c,
                camera=prior,
                resolution=resolution,
                cut_quantile=cut_quantile,
                adapt_depth=False,
            )
            scores.append(non_flatness_score(out.depth, G.renderer.near, G.renderer.far, num_bins))
    G.train(was_training)
    return torch.cat(scores).mean().item()


class NonFlatnessScore(KimgIntervalCallback):
    """Every ``every_kimg`` (and at the end of training) logs ``val/nfs<num_samples>``."""

    def __init__(
        self,
        every_kimg: float = 100.0,
        num_samples: int = 256,
        resolution: int | None = None,
        batch_size: int = 4,
        cut_quantile: float = 0.5,
        at_train_end: bool = True,
    ) -> None:
        self.every_kimg, self.num_samples, self.resolution = every_kimg, num_samples, resolution
        self.batch_size, self.cut_quantile, self.at_train_end = (
            batch_size,
            cut_quantile,
            at_train_end,
        )
        self.last_value: float | None = None

    @property
    def key(self) -> str:
        return f"val/nfs{self.num_samples}"

    def _run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = compute_nfs(
            pl_module.G_ema, self.num_samples, self.resolution, self.batch_size, self.cut_quantile
        )
        self.last_value = value
        if trainer.is_global_zero:  # same seed on every rank: identical value
            for logger in trainer.loggers:
                logger.log_metrics(
                    {self.key: value, "progress/kimg": pl_module.kimg}, step=trainer.global_step
                )
        trainer.callback_metrics[self.key] = torch.tensor(value)

    def fire(self, trainer: Trainer, pl_module: LightningModule, tag: str) -> None:
        self._run(trainer, pl_module)
