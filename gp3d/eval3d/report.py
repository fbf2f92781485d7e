"""The benchmark's unconditional scores, its table and its JSON file."""

import json
import math
import os
from pathlib import Path

import torch

from gp3d.callbacks.nfs import compute_nfs
from gp3d.data.truth import GroundTruth
from gp3d.eval3d.samples import render_samples
from gp3d.metrics.feature_net import to_uint8_images
from gp3d.metrics.fid import FeatureStats, frechet_distance, kernel_inception_distance
from gp3d.metrics.geometry import depth_distribution_scores
from gp3d.metrics.nfs import mean_non_flatness_score


@torch.no_grad()
def unconditional_scores(
    G, net, truth: GroundTruth, num_fakes, num_nfs, batch_size, class_counts, seed, progress=None
) -> dict:
    """KID / FID of generated images vs the held-out images, NFS, and the depth-distribution
    scores of the same generated samples vs the held-out true depth."""
    fakes = render_samples(G, net, num_fakes, batch_size, class_counts, seed, progress)
    reals = torch.cat([net(to_uint8_images(x)).float().cpu() for x in truth.image.split(64)])
    fs, rs = FeatureStats.of(fakes.features), FeatureStats.of(reals)
    out = {
        "num_fakes": num_fakes,
        "num_reals": truth.num_samples,
        "kid": kernel_inception_distance(reals, fakes.features),
        "fid": frechet_distance(fs.mean, fs.cov, rs.mean, rs.cov),
    }
    if num_nfs > 0:
        out["nfs"] = compute_nfs(G, num_nfs, batch_size=batch_size, seed=seed)
        out["nfs_true"] = mean_non_flatness_score(truth.depth, truth.near, truth.far)
    out.update(depth_distribution_scores(fakes.depth, truth.depth, truth.near, truth.far))
    return out


# (section, key, label, better): what the table shows, in order
ROWS = [
    ("unconditional", "kid", "KID", "lower"),
    ("unconditional", "fid", "FID", "lower"),
    ("unconditional", "nfs", "NFS", "= true"),
    ("unconditional", "depth_w1", "depth W1 vs true", "lower"),
    ("unconditional", "foreground_fraction", "foreground fraction", "= true"),
    ("unconditional", "depth_spread", "depth spread", "= true"),
    ("unconditional", "relief", "relief", "= true"),
    ("classes", "class_accuracy", "class accuracy (GAN-test)", "higher"),
    ("reconstruction", "input_psnr", "input view PSNR (dB)", "higher"),
    ("reconstruction", "input_lpips", "input view LPIPS", "lower"),
    ("reconstruction", "abs_rel", "recon AbsRel (median-scaled)", "lower"),
    ("reconstruction", "si_log_rmse", "recon si-log RMSE", "lower"),
    ("reconstruction", "shape_err", "recon shape error (flat = 1)", "lower"),
    ("reconstruction", "depth_corr", "recon depth correlation", "higher"),
    ("reconstruction", "novel_psnr", "novel view PSNR (dB)", "higher"),
    ("reconstruction", "novel_ssim", "novel view SSIM", "higher"),
    ("reconstruction", "novel_lpips", "novel view LPIPS", "lower"),
]


def _fmt(x) -> str:
    return "" if x is None else ("nan" if isinstance(x, float) and math.isnan(x) else f"{x:.4f}")


def format_table(report: dict) -> str:
    rows = [("score", "value", "reference", "better")]
    for section, key, label, better in ROWS:
        sec = report.get(section)
        if sec is None or key not in sec:
            continue
        ref = sec.get(f"{key}_true", sec.get(f"{key}_flat"))
        rows.append((label, _fmt(sec[key]), _fmt(ref), better))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    u, r = report.get("unconditional", {}), report.get("reconstruction")
    lines.append(
        f"{u.get('num_fakes')} samples vs {u.get('num_reals')} held-out images "
        f"({report['feature_net']})"
        + (f"; {r['num_images']} inverted ({r['w_steps']}+{r['g_steps']} PTI steps)" if r else "")
    )
    lines.append(
        "reference: the held-out data's own value (unconditional rows), a flat depth map's (recon depth rows)"
    )
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike) -> Path:
    """Write JSON atomically; non-finite floats become null (strict JSON)."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(clean(report), indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
