"""When a kimg-based callback fires: progress is the LitModule's ``nimg`` (images over all ranks)."""


def crossed_kimg(trainer, pl_module, batch, every_kimg: float) -> bool:
    """True when the batch just finished carried ``nimg`` across a multiple of ``every_kimg``."""
    every = int(every_kimg * 1000)
    if every <= 0:
        return False
    now = int(pl_module.nimg.item())
    prev = now - batch.image.shape[0] * trainer.world_size
    return now // every > prev // every
