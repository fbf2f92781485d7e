"""When a kimg-based callback fires: progress is the LitModule's ``nimg`` (images over all ranks)."""

from lightning import Callback


def crossed_kimg(trainer, pl_module, batch, every_kimg: float) -> bool:
    """True when the batch just finished carried ``nimg`` across a multiple of ``every_kimg``."""
    every = int(every_kimg * 1000)
    if every <= 0:
        return False
    now = int(pl_module.nimg.item())
    prev = now - batch.image.shape[0] * trainer.world_size
    return now // every > prev // every


def kimg_tag(pl_module) -> str:
    """``kimgNNNNNN``: the file-name stem of outputs made at the current progress."""
    return f"kimg{int(pl_module.nimg.item()) // 1000:06d}"


class KimgIntervalCallback(Callback):
    """Base of the callbacks that act every ``every_kimg`` of training and once when it ends.

    Subclasses set ``every_kimg`` and ``at_train_end`` and implement :meth:`fire`. Interval
    firings never happen under ``fast_dev_run`` or sanity checking: those check the loop, and
    the loop's ``nimg`` does not reach real intervals. Two class-level switches cover the
    differences between callbacks:

    - ``final_in_fast_dev_run``: also fire at the end of a ``fast_dev_run`` (cheap outputs that
      tests of the whole pipeline want to see, e.g. sample grids);
    - ``skip_final_if_fired`` (default on): no final firing when the last batch already fired at
      the same ``nimg``: the same weights and seeds give the same metrics, grids and videos.
    """

    every_kimg: float = 0.0
    at_train_end: bool = True
    final_in_fast_dev_run: bool = True
    skip_final_if_fired: bool = True
    _fired_nimg: int | None = None

    def fire(self, trainer, pl_module, tag: str) -> None:
        """Do the callback's work; ``tag`` is ``kimgNNNNNN`` (``..._final`` at the end)."""
        raise NotImplementedError

    @staticmethod
    def _fast_dev_run(trainer) -> bool:
        return bool(getattr(trainer, "fast_dev_run", False))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._fast_dev_run(trainer) or getattr(trainer, "sanity_checking", False):
            return
        if crossed_kimg(trainer, pl_module, batch, self.every_kimg):
            self._fired_nimg = int(pl_module.nimg.item())
            self.fire(trainer, pl_module, kimg_tag(pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.at_train_end:
            return
        if self._fast_dev_run(trainer) and not self.final_in_fast_dev_run:
            return
        if self.skip_final_if_fired and self._fired_nimg == int(pl_module.nimg.item()):
            return
        self.fire(trainer, pl_module, kimg_tag(pl_module) + "_final")
