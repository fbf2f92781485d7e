"""Divergence rollback: NaN / Inf losses, or a sustained blow-up, roll training back in-process to
the newest checkpoint saved before the last healthy check (weights, EMA, optimisers, counters),
optionally with a new seed and lower learning rates; retries are capped and every event goes to
the loggers (CSV, W&B) as ``rollback/*``.

The 3DGP README tells users to restart diverged ImageNet runs by hand from the last good
checkpoint; this does it unattended. Checks read the step's logged losses every ``check_every``
steps only (one host sync per check).
"""

import logging
import math

import torch
from lightning import Callback, LightningModule, Trainer

from gp3d.training.fsdp import is_sharded, load_full_state
from gp3d.utils import seeding
from gp3d.utils.resume import checkpoint_problem, run_checkpoints

log = logging.getLogger("gp3d.divergence")
GRAD_STREAK = "train/grad_skip_streak"  # logged by GP3DLitModule's GradGuard


class DivergenceRollback(Callback):
    """Args:
    check_every: steps between checks.
    keys: logged metrics that must stay finite (and within ``bound``).
    bound: |value| above which a check counts as a blow-up (None: only NaN / Inf).
    patience: consecutive blow-up checks that trigger a rollback.
    max_retries: rollbacks allowed before training stops with an error.
    lr_factor: learning rates are multiplied by this at each rollback (1 = unchanged).
    reseed: draw a new training RNG stream after a rollback (else the same failure may recur).
    max_grad_skips: a check that finds this many consecutive optimizer steps of one network
        skipped for non-finite gradients (``train/grad_skip_streak``, see
        ``gp3d/training/grad_guard.py``) rolls back; None = never.
    """

    def __init__(
        self,
        check_every: int = 10,
        keys: tuple[str, ...] = ("train/loss_G", "train/loss_D"),
        bound: float | None = None,
        patience: int = 3,
        max_retries: int = 3,
        lr_factor: float = 0.5,
        reseed: bool = True,
        max_grad_skips: int | None = 4,
    ) -> None:
        self.check_every, self.keys, self.bound = max(1, check_every), tuple(keys), bound
        self.patience, self.max_retries = max(1, patience), max_retries
        self.lr_factor, self.reseed = lr_factor, reseed
        self.max_grad_skips = max_grad_skips
        self.retries, self.good_nimg, self._strikes, self._steps = 0, 0, 0, 0

    def _verdict(self, trainer: Trainer) -> str | None:
        values = {k: trainer.callback_metrics.get(k) for k in self.keys}
        values = {k: float(v) for k, v in values.items() if v is not None}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            return "non-finite " + ", ".join(bad)
        streak = trainer.callback_metrics.get(GRAD_STREAK)
        limit = self.max_grad_skips
        if limit is not None and streak is not None and float(streak) >= limit:
            return f"non-finite gradients: the last {int(streak)} steps were skipped"
        if self.bound is not None and any(abs(v) > self.bound for v in values.values()):
            self._strikes += 1
            if self._strikes >= self.patience:
                return f"|{'|, |'.join(self.keys)}| > {self.bound} for {self._strikes} checks"
            return None
        self._strikes = 0
        return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._steps += 1
        if self._steps % self.check_every:
            return
        reason = self._verdict(trainer)
        nimg = int(pl_module.nimg.item())
        if reason is None:
            if self._strikes == 0:
                self.good_nimg = nimg
            return
        self._roll_back(trainer, pl_module, reason, nimg)

    def _roll_back(self, trainer: Trainer, pl_module: LightningModule, reason: str, nimg: int):
        self.retries += 1
        if self.retries > self.max_retries:
            raise RuntimeError(
                f"training diverged at {nimg} images ({reason}) after {self.max_retries} "
                "rollbacks; raise callbacks.rollback.max_retries or lower the learning rates"
            )
        ckpt, path = self._last_good(trainer)
        if ckpt is None:
            raise RuntimeError(
                f"training diverged at {nimg} images ({reason}) and no checkpoint from before "
                f"{self.good_nimg} images exists to roll back to"
            )
        if is_sharded(pl_module):  # trainer=fsdp: full tensors into this rank's shards
            load_full_state(pl_module, trainer.optimizers, ckpt)
        else:
            pl_module.load_state_dict(ckpt["state_dict"])
            for opt, state in zip(trainer.optimizers, ckpt["optimizer_states"], strict=True):
                opt.load_state_dict(state)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] *= self.lr_factor
        pl_module._sync_host_counters()
        back_to = int(pl_module.nimg.item())
        if self.reseed:
            torch.manual_seed(seeding.resume_seed(torch.initial_seed(), back_to + self.retries))
        self._strikes = 0
        event = {
            "rollback/count": float(self.retries),
            "rollback/from_kimg": nimg / 1000,
            "rollback/to_kimg": back_to / 1000,
        }
        for logger in trainer.loggers:
            logger.log_metrics(event, step=trainer.global_step)
        log.warning(
            "divergence at %d images (%s): rolled back to %s (%d images), lr x %g, retry %d/%d",
            nimg, reason, path, back_to, self.lr_factor, self.retries, self.max_retries,
        )  # fmt: skip

    def _last_good(self, trainer: Trainer):
        for path in run_checkpoints(trainer.default_root_dir):
            if checkpoint_problem(path) is not None:
                continue
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            if int(ckpt["state_dict"]["nimg"]) <= self.good_nimg:
                return ckpt, path
        return None, None

    def state_dict(self) -> dict:
        return {"retries": self.retries, "good_nimg": self.good_nimg}

    def load_state_dict(self, state: dict) -> None:
        self.retries, self.good_nimg = state["retries"], state["good_nimg"]
