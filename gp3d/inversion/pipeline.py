"""PTI inversion of one image into a 3D generator: stage 1 (latent) then stage 2 (tuning)."""

import inspect

import torch

from gp3d.inference.sampling import one_hot, render_planes
from gp3d.inference.trajectories import posterior_mean_camera
from gp3d.inversion.latent import optimise_latent, w_statistics
from gp3d.inversion.pivotal import pivotal_tuning
from gp3d.inversion.result import InversionResult
from gp3d.types import CameraParams

CAMERA_MODES = ("fixed", "optimise")
# Arguments of the stage functions that invert() sets itself rather than passing through.
_OWN = {"steps", "optimise_camera", "seed", "on_step"}


def _keywords(fn) -> set[str]:
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY} - _OWN


STAGE1_KEYS, STAGE2_KEYS = _keywords(optimise_latent), _keywords(pivotal_tuning)


def _split(hyperparameters: dict) -> tuple[dict, dict]:
    unknown = set(hyperparameters) - STAGE1_KEYS - STAGE2_KEYS
    if unknown:
        raise TypeError(
            f"unknown PTI hyperparameters {sorted(unknown)}; stage 1 takes "
            f"{sorted(STAGE1_KEYS)}, stage 2 {sorted(STAGE2_KEYS)}"
        )
    pick = lambda keys: {k: v for k, v in hyperparameters.items() if k in keys}  # noqa: E731
    return pick(STAGE1_KEYS), pick(STAGE2_KEYS)


def _check_inputs(image: torch.Tensor, camera, depth) -> None:
    if image.dim() != 4 or image.shape[:2] != (1, 3) or image.shape[2] != image.shape[3]:
        raise ValueError(
            f"image must be one square RGB image [1, 3, H, H] in [-1, 1], got {list(image.shape)}"
            " (centre-crop it to a square first)"
        )
    if not torch.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    if camera is not None and camera.batch_size != 1:
        raise ValueError(f"camera must be a batch of 1, got {camera.batch_size}")
    if depth is not None and (depth.dim() != 4 or depth.shape != (1, 1, *image.shape[2:])):
        raise ValueError(
            f"depth must be [1, 1, {image.shape[2]}, {image.shape[3]}] like the image, got "
            f"{list(depth.shape)}"
        )


def invert(
    G,
    image: torch.Tensor,
    c=None,
    camera: CameraParams | None = None,
    depth: torch.Tensor | None = None,
    *,
    w_steps: int = 450,
    g_steps: int = 350,
    camera_mode: str = "fixed",
    lpips: torch.nn.Module | None = None,
    seed: int = 0,
    progress: bool = True,
    **hyperparameters,
) -> InversionResult:
    """Pivotal Tuning Inversion (spec multiview_pti 1.5) of ``image`` [1, 3, H, H] in [-1, 1].

    Args:
        G: a :class:`~gp3d.models.generator.Generator` (or a LoadedGenerator); never modified,
            stage 2 tunes a deep copy.
        c: class index or one-hot [1, c_dim]; None for an unconditional generator.
        camera: posterior camera (batch 1) rendered as given; None = the generator's mean
            posterior camera for the class (spec 8.4).
        depth: optional target depth [1, 1, H, H], any units affine in depth with larger =
            farther (metric, or the data's normalised LeReS depth); adds the scale-and-shift
            invariant depth loss (``depth_weight``, default 1) to both stages.
        w_steps, g_steps: stage-1 / stage-2 steps (PTI: 450 / 350).
        camera_mode: "fixed", or "optimise" to fit the camera in stage 1 too.
        lpips: a :func:`gp3d.metrics.lpips.build_lpips` module; None builds the default
            (AlexNet, pretrained weights needed).
        hyperparameters: keyword arguments of :func:`~gp3d.inversion.latent.optimise_latent`
            (w_lr, w_space "w"/"w+", camera_lr, ...) and
            :func:`~gp3d.inversion.pivotal.pivotal_tuning` (g_lr, lpips_threshold, reg_alpha,
            ...); the shared weights (lpips_weight, l2_weight, depth_weight) go to both.
    """
    G = getattr(G, "G", G)  # accept a LoadedGenerator
    if camera_mode not in CAMERA_MODES:
        raise ValueError(f"camera_mode must be one of {CAMERA_MODES}, got {camera_mode!r}")
    _check_inputs(image, camera, depth)
    kw1, kw2 = _split(hyperparameters)
    device = next(G.parameters()).device
    if lpips is None:
        from gp3d.metrics.lpips import build_lpips

        lpips = build_lpips()
    lpips = lpips.to(device)
    onehot = one_hot(c, G.c_dim, 1, device)
    target = image.to(device, torch.float32)
    depth = None if depth is None else depth.to(device, torch.float32)
    if camera is None:
        camera = posterior_mean_camera(G, onehot)
    camera = camera.to(device)

    bar = _progress(w_steps + g_steps, progress)
    try:
        fit = optimise_latent(
            G, target, onehot, camera, lpips, depth, steps=w_steps,
            optimise_camera=camera_mode == "optimise", seed=seed, on_step=bar, **kw1,
        )  # fmt: skip
        w_mean, _ = w_statistics(G, onehot, kw1.get("w_avg_samples", 600), seed)
        tuned, losses2 = pivotal_tuning(
            G, fit.ws, fit.camera, target, lpips, onehot, w_mean, depth, steps=g_steps,
            seed=seed, on_step=bar, **kw2,
        )  # fmt: skip
    finally:
        bar.close()
    with torch.no_grad():
        planes = tuned.synthesis(fit.ws, noise_mode="const")
    final = render_planes(tuned, planes, fit.camera, target.shape[-1], seed=0)
    return InversionResult(
        tuned, fit.ws, fit.camera, onehot, final.rgb, final.depth, fit.losses + losses2
    )


class _progress:
    """A tqdm bar showing the current stage and loss (or nothing); called once per step."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="PTI", unit="step", leave=False)

    def __call__(self, record: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix(stage=record["stage"], loss=f"{record['loss']:.4f}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
