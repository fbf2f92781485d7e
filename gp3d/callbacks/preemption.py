"""Graceful stop on SIGTERM / SIGINT (SLURM pre-emption, ``kill``, Ctrl-C): the step under way
finishes, ``last.ckpt`` is written (``KimgCheckpoint.on_train_end``) and the process exits 0.

Lightning's own SIGTERM handling raises ``SIGTERMException`` (a ``SystemExit``) after the step
and Ctrl-C raises ``KeyboardInterrupt`` in the middle of one (then exits 1, with a checkpoint
of a half-done step). This callback replaces both handlers for the training loop only: the
signal sets a flag, and the next step boundary sets ``trainer.should_stop`` so the loop ends
normally. A second SIGINT aborts at once (KeyboardInterrupt), for a stuck step. Lightning's
SLURM handler (``SIGUSR1``: save ``hpc_ckpt_N.ckpt`` and ``scontrol requeue``) is left alone.

Under ``hydra/launcher=slurm`` the process is a submitit job: submitit owns its pre-emption
signal (``SIGUSR2`` unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise; sbatch ``--signal``, sent
``signal_delay_s`` before the time limit) and answers it by re-queueing the job and exiting at
once, mid-step. When a launcher's Python handler owns one of ``requeue_signals`` at the start of
training, this callback takes that signal over too: the step finishes, last.ckpt is written, and
after ``fit`` :meth:`GracefulStop.pass_on` hands the signal to submitit, which re-queues the job
(with ``resume=latest``, hydra_plugins.gp3d_launchers.launchers.SlurmLauncher) and exits.
"""

import logging
import signal
from types import FrameType

from lightning import Callback, LightningModule, Trainer

log = logging.getLogger("gp3d.preemption")


def launcher_handler(handler: object) -> bool:
    """A Python handler installed before training by what launched the process (submitit's
    checkpoint-and-requeue), not Lightning's own SLURM handler (left alone, see above)."""
    return callable(handler) and type(handler).__name__ != "_HandlersCompose"


def pass_on_signals(callbacks: list) -> None:
    """After ``fit``: let every GracefulStop hand its requeue signal on (see the module doc)."""
    for cb in callbacks:
        if isinstance(cb, GracefulStop):
            cb.pass_on()


class GracefulStop(Callback):
    """Args:
    signals: names of the signals that stop training gracefully.
    sync_every: under DDP, how often (steps) the ranks agree on stopping (one collective);
        a single process reads its flag every step at no cost.
    requeue_signals: also stop gracefully on each of these signals that a launcher's Python
        handler owns at the start of training (submitit), and hand it on afterwards
        (:meth:`pass_on`); empty: never.
    """

    def __init__(
        self,
        signals: tuple[str, ...] = ("SIGTERM", "SIGINT"),
        sync_every: int = 10,
        requeue_signals: tuple[str, ...] = ("SIGUSR1", "SIGUSR2"),
    ):
        self.signals = tuple(getattr(signal, name) for name in signals)
        self.sync_every = max(1, int(sync_every))
        self.requeue_signals = tuple(getattr(signal, name) for name in requeue_signals)
        self.received: str | None = None
        self._previous: dict[int, object] = {}
        self._taken: set[int] = set()  # requeue signals a launcher owned at the start

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        self.received = name
        log.warning("%s received: finishing this step, saving last.ckpt, then stopping", name)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Registered here, after Lightning's own SIGTERM handler (set when fit starts).
        self.received = None
        self._taken = {
            s for s in self.requeue_signals if launcher_handler(signal.getsignal(s))
        } - set(self.signals)
        signals = [*self.signals, *sorted(self._taken)]
        try:
            for signum in signals:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread (e.g. a notebook's worker thread): leave as is
            self._previous.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            if trainer.global_step % self.sync_every != 0:
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not trainer.should_stop:
            log.warning(
                "stopping on %s at %s images",
                self.received or "a signal on another rank",
                int(pl_module.nimg.item()),
            )
            trainer.should_stop = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception) -> None:
        self._restore()

    def pass_on(self) -> None:
        """Call after ``fit``: if training stopped on the requeue signal, raise it again for the
        launcher's handler (restored by now), which re-queues the job and exits the process."""
        taken = {signal.Signals(s).name: s for s in self._taken}
        if self.received not in taken:
            return
        signum = taken[self.received]
        log.warning("last.ckpt written; handing %s to the launcher to re-queue", self.received)
        self.received = None
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
