"""FID of the EMA generator during training (spec 8.1's fid2k_full), logged as ``val/fid<N>``.

Every ``every_kimg``: ``num_samples`` fakes (G_ema, psi = 1, prior cameras through the camera
generator, labels of random dataset items) rendered by all ranks together, their features
gathered, and the Fréchet distance to the statistics of *all* real images (mirror off), which
are computed once at fit start and cached on disk (``gp3d.metrics.real_stats``). The best value
so far keeps ``checkpoints/best.ckpt`` (``gp3d.callbacks.checkpoint.BestCheckpoint``).
"""

import time
from pathlib import Path

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from gp3d.callbacks.checkpoint import BestCheckpoint
from gp3d.callbacks.interval import KimgIntervalCallback
from gp3d.metrics.distributed import broadcast_value
from gp3d.metrics.fakes import fake_features
from gp3d.metrics.feature_net import FeatureNetwork, load_feature_network
from gp3d.metrics.fid import FeatureStats, frechet_distance
from gp3d.metrics.real_stats import RealStats, real_stats


def metric_name(prefix: str, n: int) -> str:
    """The original's naming: 2048 -> fid2k, 50000 -> fid50k, 300 -> fid300."""
    if n % 1000 == 0:
        return f"{prefix}{n // 1000}k"
    if n % 1024 == 0:
        return f"{prefix}{n // 1024}k"
    return f"{prefix}{n}"


def fid_of_generator(
    G,
    net: FeatureNetwork,
    reals: RealStats,
    num_samples: int,
    batch_size: int = 4,
    class_counts: list[int] | None = None,
    seed: int = 0,
) -> float:
    """FID of ``num_samples`` fakes of ``G`` against ``reals``; call on every rank (the fakes
    are split over ranks). Every rank returns rank 0's value."""
    fakes = fake_features(G, net, num_samples, batch_size, class_counts, seed=seed)
    stats = FeatureStats.of(fakes.features)
    value = frechet_distance(stats.mean, stats.cov, reals.mean, reals.cov)
    return broadcast_value(value)


class FIDCallback(KimgIntervalCallback):
    """Logs ``val/fid<N>`` (e.g. ``val/fid2k``) every ``every_kimg`` and at the end of training.

    Args:
        every_kimg: evaluation interval in kimg (0: only at the end, if ``at_train_end``).
        num_samples: fakes per evaluation (2048 = the original's fid2k).
        feature_net: ``gp3d.metrics.feature_net.load_feature_network`` spec.
        batch_size: fakes rendered per forward (the original's batch_gen = 4).
        real_batch_size / real_num_workers: reading the real images for their statistics.
        max_real: use only the first ``max_real`` real images (None: all, i.e. "_full").
        cache_dir: where real statistics are cached (None: ``<dataset folder>/../fid_stats``).
        seed: the fakes' seed; the same seed every time, so values differ only by the weights.
        at_train_end: also evaluate when training ends (unless just evaluated).
        save_best: keep ``best.ckpt`` by this metric (lowest).
    """

    def __init__(
        self,
        every_kimg: float = 100.0,
        num_samples: int = 2048,
        feature_net: str = "inception",
        batch_size: int = 4,
        real_batch_size: int = 64,
        real_num_workers: int = 0,
        max_real: int | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        at_train_end: bool = True,
        save_best: bool = True,
    ) -> None:
        if num_samples < 2:
            raise ValueError(f"FID needs num_samples >= 2, got {num_samples}")
        self.every_kimg, self.num_samples, self.feature_net = every_kimg, num_samples, feature_net
        self.batch_size, self.real_batch_size = batch_size, real_batch_size
        self.real_num_workers, self.max_real, self.cache_dir = real_num_workers, max_real, cache_dir
        self.seed, self.at_train_end = seed, at_train_end
        self.best = BestCheckpoint(self.key, mode="min") if save_best else None
        self.net: FeatureNetwork | None = None
        self.reals: RealStats | None = None
        self.last_value: float | None = None

    @property
    def key(self) -> str:
        return "val/" + metric_name("fid", self.num_samples)

    @property
    def state_key(self) -> str:
        return f"FIDCallback[{self.key}]"

    def _inactive(self, trainer: Trainer) -> bool:
        return self._fast_dev_run(trainer) or trainer.sanity_checking

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._inactive(trainer) or (self.every_kimg <= 0 and not self.at_train_end):
            return
        # fail at start, not hours in, if the network's weights are unavailable
        self.net = load_feature_network(self.feature_net, device=pl_module.device)
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "manifest"):
            raise RuntimeError(
                "FIDCallback reads the real images through the gp3d datamodule (its path and "
                "manifest): fit with datamodule=GP3DDataModule(...), or remove callbacks.fid"
            )
        cache = self.cache_dir or str(Path(dm.path).resolve().parent / "fid_stats")
        start = time.perf_counter()
        self.reals = real_stats(
            dm.path,
            self.net,
            cache,
            self.real_batch_size,
            self.real_num_workers,
            self.max_real,
            device=pl_module.device,
            manifest=dm.manifest,
        )
        rank_zero_info(
            f"FID real statistics: {self.reals.n} images, {self.net.name}, "
            f"{time.perf_counter() - start:.1f} s ({self.reals.meta.get('cache')})"
        )

    def _run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.reals is None:
            return
        start = time.perf_counter()
        counts = trainer.datamodule.manifest.get("class_counts")
        value = fid_of_generator(
            pl_module.G_ema, self.net, self.reals, self.num_samples, self.batch_size, counts,
            self.seed,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        self.last_value = value
        kimg = pl_module.kimg
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(
                    {self.key: value, f"{self.key}_sec": seconds, "progress/kimg": kimg},
                    step=trainer.global_step,
                )
        trainer.callback_metrics[self.key] = torch.tensor(value)
        if self.best is not None:
            self.best.update(trainer, value, kimg)

    def fire(self, trainer: Trainer, pl_module: LightningModule, tag: str) -> None:
        self._run(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"best": self.best.state_dict() if self.best else None, "last": self.last_value}

    def load_state_dict(self, state_dict: dict) -> None:
        if self.best is not None and state_dict.get("best"):
            self.best.load_state_dict(state_dict["best"])
        self.last_value = state_dict.get("last")
