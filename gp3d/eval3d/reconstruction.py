"""Single-view 3D reconstruction against ground truth (PTI, spec multiview_pti 1.5).

For each held-out sample: invert its image with PTI under its *true* camera (fixed; the
benchmark measures geometry, not pose estimation) from the image alone (no depth target), then

- compare the reconstruction's depth in that view with the true depth (AbsRel and si-log RMSE
  after median scaling, on the true foreground; ``gp3d.metrics.geometry``), next to the same
  scores of a flat depth map (``*_flat``: what a billboard would get on these objects), plus the
  relief-normalised shape error and the depth correlation, which a flat map fails outright, and
- render it from the sample's first novel true camera and compare with the dataset's render of
  the same scene from that camera (PSNR, SSIM, LPIPS).
"""

from dataclasses import dataclass, field

import torch

from gp3d.data.truth import GroundTruth
from gp3d.metrics import geometry as geo


@dataclass
class Reconstruction:
    """Per-sample scores and the renders for the panel (CPU tensors, batch of N)."""

    index: list[int]
    scores: dict[str, list[float]] = field(default_factory=dict)  # name -> [N]
    rgb: list[torch.Tensor] = field(default_factory=list)  # [1, 3, H, W] input view
    depth: list[torch.Tensor] = field(default_factory=list)  # [1, 1, H, W]
    novel_rgb: list[torch.Tensor] = field(default_factory=list)  # [1, 3, H, W] novel view

    def summary(self) -> dict[str, float]:
        """Mean of each score over the samples (NaN scores, e.g. empty foreground, skipped)."""
        out = {}
        for k, v in self.scores.items():
            t = torch.tensor(v, dtype=torch.float64)
            t = t[torch.isfinite(t)]
            out[k] = float(t.mean()) if t.numel() else float("nan")
        return out


def _import_invert():
    try:
        from gp3d.inversion import invert
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "single-view reconstruction needs gp3d.inversion (PTI), which this gp3d lacks; "
            "update gp3d or pass --no-invert"
        ) from err
    return invert


def sample_scores(
    out_rgb, out_depth, out_novel, truth: GroundTruth, i: int, lpips
) -> dict[str, float]:
    """Scores of one reconstruction: image and depth in the input view, image in the novel view."""
    image = truth.image[i : i + 1]
    true_depth = truth.depth[i : i + 1]
    mask = geo.foreground_mask(true_depth, truth.near, truth.far)
    pred = out_depth.float().cpu().clamp(min=1e-6)
    flat = torch.ones_like(true_depth)  # reference: a billboard (any constant depth)
    novel_true = truth.novel_image[i, :1]
    return {
        "input_psnr": float(geo.psnr(out_rgb.float().cpu(), image)[0]),
        "input_lpips": float(geo.lpips_distance(lpips, out_rgb.float().cpu(), image)[0]),
        "abs_rel": float(geo.abs_rel(pred, true_depth, mask)[0]),
        "si_log_rmse": float(geo.si_log_rmse(pred, true_depth, mask)[0]),
        "abs_rel_flat": float(geo.abs_rel(flat, true_depth, mask)[0]),
        "si_log_rmse_flat": float(geo.si_log_rmse(flat, true_depth, mask)[0]),
        "shape_err": float(geo.depth_shape_error(pred, true_depth, mask)[0]),
        "shape_err_flat": float(geo.depth_shape_error(flat, true_depth, mask)[0]),
        "depth_corr": float(geo.depth_correlation(pred, true_depth, mask)[0]),
        "depth_corr_flat": float(geo.depth_correlation(flat, true_depth, mask)[0]),
        "novel_psnr": float(geo.psnr(out_novel, novel_true)[0]),
        "novel_ssim": float(geo.ssim(out_novel, novel_true)[0]),
        "novel_lpips": float(geo.lpips_distance(lpips, out_novel, novel_true)[0]),
    }


def reconstruct(
    G,
    truth: GroundTruth,
    indices: list[int],
    lpips: torch.nn.Module,
    w_steps: int,
    g_steps: int,
    seed: int = 0,
    progress=None,
    verbose: bool = False,
) -> Reconstruction:
    """Invert ``truth`` samples ``indices`` with PTI and score them; ``progress()`` after each."""
    invert = _import_invert()
    if truth.num_novel_views < 1:
        raise ValueError("the held-out split has no novel views; regenerate it with novel_views")
    if G.c_dim > 0 and int(truth.label.max()) >= G.c_dim:
        raise ValueError(
            f"the held-out split has class {int(truth.label.max())} but the generator has "
            f"c_dim={G.c_dim}: benchmark a generator trained on this data config"
        )
    device = next(G.parameters()).device
    result = Reconstruction(index=list(indices))
    for i in indices:
        c = int(truth.label[i]) if G.c_dim > 0 else None
        inv = invert(
            G, truth.image[i : i + 1].to(device), c, truth.camera[i : i + 1].to(device),
            w_steps=w_steps, g_steps=g_steps, lpips=lpips, seed=seed, progress=verbose,
        )  # fmt: skip
        novel = inv.render(truth.novel_view_camera(i, 0).to(device)).rgb.float().cpu()
        for k, v in sample_scores(inv.rgb, inv.depth, novel, truth, i, lpips).items():
            result.scores.setdefault(k, []).append(v)
        result.rgb.append(inv.rgb.float().cpu())
        result.depth.append(inv.depth.float().cpu())
        result.novel_rgb.append(novel)
        if progress is not None:
            progress()
    return result
