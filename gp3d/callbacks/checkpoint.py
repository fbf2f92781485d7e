"""Checkpoints every N kimg, plus ``last.ckpt`` (also on interruption), saved atomically, and
``best.ckpt`` by a metric (:class:`BestCheckpoint`, driven by the metric's callback)."""

import json
import math
import os
from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from gp3d.callbacks.interval import crossed_kimg
from gp3d.metrics.distributed import broadcast_value
from gp3d.utils.resume import sidecar_of


class KimgCheckpoint(Callback):
    """Saves ``checkpoints/kimgXXXXXX.ckpt`` every ``every_kimg`` and keeps ``last.ckpt`` current.

    Progress is counted in images (the LitModule's ``nimg``), not Lightning steps, which count
    optimizer steps under manual optimisation. Use with ``AtomicCheckpointIO`` so an interrupted
    save never leaves a truncated file.

    Args:
        every_kimg: periodic snapshot interval; 0 disables periodic snapshots.
        last_every_kimg: how often ``last.ckpt`` is refreshed (defaults to every_kimg).
        dirpath: folder; default ``<trainer.default_root_dir>/checkpoints``.
        keep_last: keep only this many periodic snapshots (None = all); ``last.ckpt`` and
            ``best.ckpt`` are kept besides.
        save_on_exception: write ``last.ckpt`` when training stops on an exception/Ctrl-C.
    """

    def __init__(
        self,
        every_kimg: float = 100.0,
        last_every_kimg: float | None = None,
        dirpath: str | None = None,
        keep_last: int | None = None,
        save_on_exception: bool = True,
    ) -> None:
        self.every_kimg, self.last_every_kimg = every_kimg, last_every_kimg or every_kimg
        self.dirpath, self.keep_last, self.save_on_exception = dirpath, keep_last, save_on_exception
        self._last_saved_nimg = -1

    def _dir(self, trainer: Trainer) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints")

    def _save(self, trainer: Trainer, pl_module: LightningModule, name: str) -> Path:
        path = self._dir(trainer) / name
        trainer.save_checkpoint(path)
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        now = int(pl_module.nimg.item())
        if crossed_kimg(trainer, pl_module, batch, self.every_kimg):
            path = self._save(trainer, pl_module, self.snapshot_name(now))
            rank_zero_info(f"saved {path}")
            self._prune(trainer)
        if crossed_kimg(trainer, pl_module, batch, self.last_every_kimg):
            self._save(trainer, pl_module, "last.ckpt")
            self._last_saved_nimg = now

    def on_train_end(self, trainer, pl_module) -> None:
        if int(pl_module.nimg.item()) != self._last_saved_nimg:
            path = self._save(trainer, pl_module, "last.ckpt")
            rank_zero_info(f"saved {path}")

    def on_exception(self, trainer, pl_module, exception) -> None:
        if not self.save_on_exception or int(pl_module.nimg.item()) == 0:
            return
        name = type(exception).__name__
        if trainer.world_size == 1:
            path = self._save(trainer, pl_module, "last.ckpt")
            rank_zero_info(f"training stopped ({name}); saved {path} to resume from")
            return
        # Multi-process: the exception may have hit this rank alone while the others wait in a
        # collective, so Trainer.save_checkpoint's barrier (or FSDP's state gathering) would hang
        # here and hide the traceback. Under DDP rank 0 holds the whole state: it writes it with
        # no collective; the other ranks write nothing and re-raise at once.
        if not isinstance(trainer.strategy, DDPStrategy) or isinstance(
            trainer.strategy, DeepSpeedStrategy
        ):
            rank_zero_warn(
                f"training stopped ({name}); last.ckpt is not rewritten under "
                f"{type(trainer.strategy).__name__} (saving a sharded state needs every rank): "
                "resume from the newest periodic checkpoint"
            )
            return
        if trainer.global_rank == 0:
            path = self._dir(trainer) / "last.ckpt"
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            trainer.strategy.save_checkpoint(checkpoint, path)
            print(f"training stopped ({name}); saved {path} to resume from", flush=True)

    def snapshot_name(self, nimg: int) -> str:
        """``kimgNNNNNN.ckpt``; ``nimgNNNNNNNNNN.ckpt`` for intervals that are not whole kimg
        (short test runs), where kimg names would collide."""
        if float(self.every_kimg).is_integer():
            return f"kimg{nimg // 1000:06d}.ckpt"
        return f"nimg{nimg:010d}.ckpt"

    def _prune(self, trainer: Trainer) -> None:
        """Keep the ``keep_last`` newest snapshots (last.ckpt and best.ckpt are never pruned)."""
        if self.keep_last is None or trainer.global_rank != 0:
            return
        folder = self._dir(trainer)
        snaps = sorted([*folder.glob("kimg*.ckpt"), *folder.glob("nimg*.ckpt")])
        snaps.sort(key=lambda p: p.stat().st_mtime_ns)
        for old in snaps[: max(len(snaps) - self.keep_last, 0)]:
            old.unlink(missing_ok=True)
            sidecar_of(old).unlink(missing_ok=True)


class BestCheckpoint:
    """Keeps ``checkpoints/best.ckpt`` = the training state with the best value of one metric,
    plus ``best.json`` describing it. Not a Callback: the callback that computes the metric calls
    :meth:`update` right after computing it, so the saved weights are exactly the evaluated ones
    (a separate callback would run in list order, possibly one batch late).

    Call :meth:`update` on every rank with the same value (``trainer.save_checkpoint`` is
    collective under DDP; rank 0 writes, through the trainer's atomic CheckpointIO).
    """

    def __init__(
        self,
        metric: str,
        mode: str = "min",
        filename: str = "best.ckpt",
        dirpath: str | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode, self.filename, self.dirpath = metric, mode, filename, dirpath
        self.best_value: float | None = None
        self.best_kimg: float | None = None

    def is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def update(self, trainer: Trainer, value: float, kimg: float) -> bool:
        """Save ``best.ckpt`` if ``value`` beats the best so far; returns whether it did."""
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints")
        path = folder / self.filename
        self._adopt_saved(trainer, path.with_suffix(".json"))
        if not self.is_better(value):
            return False
        self.best_value, self.best_kimg = float(value), float(kimg)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            info = {"metric": self.metric, "mode": self.mode, "value": value, "kimg": kimg}
            info["global_step"], info["checkpoint"] = trainer.global_step, path.name
            _atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=2) + "\n")
            rank_zero_info(f"new best {self.metric} = {value:.4f} at {kimg:.4g} kimg: saved {path}")
        return True

    def _adopt_saved(self, trainer: Trainer, info_path: Path) -> None:
        """Take the best recorded in ``best.json`` when it beats the in-memory one. A resumed
        run restores this object from a checkpoint that may predate its best (``last.ckpt`` and
        the kimg snapshots are saved before the metric of the same batch): without this, a later
        value between the two would overwrite the better ``best.ckpt``. Rank 0 reads the file
        and every rank gets its value, so all ranks decide alike (saving is collective)."""
        saved, saved_kimg = math.nan, math.nan
        if trainer.is_global_zero and info_path.is_file():
            try:
                info = json.loads(info_path.read_text())
                if info.get("metric") == self.metric and info.get("mode") == self.mode:
                    saved, saved_kimg = float(info["value"]), float(info["kimg"])
            except (OSError, ValueError, KeyError, TypeError):
                saved, saved_kimg = math.nan, math.nan  # unreadable: nothing to adopt
        saved, saved_kimg = broadcast_value(saved), broadcast_value(saved_kimg)
        if math.isfinite(saved) and self.is_better(saved):
            self.best_value, self.best_kimg = saved, saved_kimg

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_kimg": self.best_kimg}

    def load_state_dict(self, state: dict) -> None:
        self.best_value, self.best_kimg = state.get("best_value"), state.get("best_kimg")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
