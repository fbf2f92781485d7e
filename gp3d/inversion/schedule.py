"""Stage-1 schedules of the StyleGAN2-ADA projector that PTI uses (spec multiview_pti 1.5)."""

import math


def projector_lr(
    t: float, initial_lr: float, rampdown: float = 0.25, rampup: float = 0.05
) -> float:
    """Learning rate at progress t in [0, 1]: linear ramp-up over the first ``rampup``, cosine
    ramp-down over the last ``rampdown`` (overrides Adam's lr, as the projector does)."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup) if rampup > 0 else ramp
    return initial_lr * ramp


def w_noise_scale(t: float, w_std: float, noise_factor: float = 0.05, ramp: float = 0.75) -> float:
    """Std of the noise added to w: ``noise_factor * w_std`` decaying quadratically to 0 at
    ``ramp`` of the steps."""
    return w_std * noise_factor * max(0.0, 1.0 - t / ramp) ** 2
