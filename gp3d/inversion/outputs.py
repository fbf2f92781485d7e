"""Writing one inversion's results into a folder (the ``python -m gp3d.invert`` outputs).

- ``reconstruction.png``: input | reconstruction | depth, side by side;
- ``depth.png``: the rendered depth, [near, far] on the turbo colormap (spec 8.4);
- ``turntable.mp4``: novel views, yaw swept around the fitted camera (a GIF if no ffmpeg);
- ``mesh.ply`` / ``mesh.obj``: marching cubes of the tuned generator's density (spec 8.3);
- ``generator.pt``: the tuned generator as a portable file (``gp3d.load_generator``), whose
  ``meta["inversion"]`` holds the pivot ``ws``, the fitted ``camera`` (8 floats, CAMERA_FIELDS
  order) and the class, so the reconstruction can be rendered again;
- ``losses.csv`` / ``losses.png``: the loss per step of both stages.
"""

import csv
import logging
import os
from pathlib import Path

import numpy as np
import torch

from gp3d.inference.mesh import save_mesh
from gp3d.inference.portable import save_generator
from gp3d.inference.trajectories import front_circle
from gp3d.inversion.result import InversionResult
from gp3d.types import CAMERA_FIELDS
from gp3d.utils.media import colorize_depth, save_array, save_video, to_uint8

log = logging.getLogger("gp3d.invert")
LOSS_KEYS = ("stage", "step", "loss", "lpips", "l2", "depth", "reg")


def write_losses_csv(losses: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOSS_KEYS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(losses)
    return path


def plot_losses(losses: list[dict], path: Path) -> Path:
    """Total and LPIPS loss against the global step, the stage boundary marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(len(losses))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in ("loss", "lpips", "l2", "depth", "reg"):
        vals = [r.get(key) for r in losses]
        if any(v is not None for v in vals):
            ax.plot(steps, [np.nan if v is None else v for v in vals], label=key, lw=1)
    n1 = sum(1 for r in losses if r["stage"] == 1)
    if 0 < n1 < len(losses):
        ax.axvline(n1 - 0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("step (stage 1 | stage 2)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_turntable(result: InversionResult, path: Path, frames: int, yaw: float, G) -> Path:
    cams = front_circle(
        result.camera, frames, yaw_amp=yaw, pitch_amp=0.1 * yaw, fov_amp=0.0,
        bounds=G.camera_prior.bounds(),
    )  # fmt: skip
    near, far = G.renderer.near, G.renderer.far
    views = []
    for cam in cams:
        out = result.render(cam)
        views.append(
            torch.cat([out.rgb[0].clamp(-1, 1), colorize_depth(out.depth, near, far)[0]], -1)
        )
    return save_video(views, path, fps=25)


def write_mesh(
    result: InversionResult, out_dir: Path, resolution: int, threshold: float, label: str = ""
) -> list[Path]:
    """mesh.ply and mesh.obj; when the density never crosses ``threshold`` on the grid (an
    untrained or very soft field) the grid's median is used instead, with a warning."""
    try:
        mesh = result.mesh(resolution=resolution, threshold=threshold)
    except ValueError as err:
        from gp3d.inference.mesh import cube_bounds, density_grid

        grid = density_grid(
            lambda p: result.generator.density(result.planes(), p[None])[0, :, 0],
            resolution, *cube_bounds(), device=result.ws.device,
        )  # fmt: skip
        median = float(np.median(grid))
        log.warning("%s: %s; meshing at the grid's median density %.4g instead", label, err, median)
        mesh = result.mesh(resolution=resolution, threshold=median)
    return [save_mesh(mesh, out_dir / "mesh.ply"), save_mesh(mesh, out_dir / "mesh.obj")]


def inversion_meta(result: InversionResult, image: Path, class_index: int | None) -> dict:
    return {
        "image": str(image),
        "class": class_index,
        "ws": result.ws.detach().cpu(),
        "camera": [float(v) for v in result.camera.to_tensor()[0].cpu()],
        "camera_fields": list(CAMERA_FIELDS),
        "resolution": result.resolution,
    }


def write_outputs(
    result: InversionResult,
    target: torch.Tensor,
    out_dir: Path,
    image: Path,
    class_index: int | None,
    config: dict,
    meta: dict,
    frames: int = 48,
    yaw: float = 0.6,
    mesh_resolution: int = 128,
    mesh_threshold: float = 25.0,
) -> list[Path]:
    """Every output of one image into ``out_dir`` (created); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    G = result.generator
    near, far = G.renderer.near, G.renderer.far
    depth_rgb = colorize_depth(result.depth, near, far)[0]
    side = np.concatenate(
        [to_uint8(target[0]), to_uint8(result.rgb[0]), to_uint8(depth_rgb)], axis=1
    )
    paths = [save_array(side, out_dir / "reconstruction.png")]
    paths.append(save_array(to_uint8(depth_rgb), out_dir / "depth.png"))
    paths.append(write_turntable(result, out_dir / "turntable.mp4", frames, yaw, G))
    paths += write_mesh(result, out_dir, mesh_resolution, mesh_threshold, str(image))
    file_meta = {**meta, "inversion": inversion_meta(result, image, class_index)}
    paths.append(save_generator(G, config, out_dir / "generator.pt", file_meta))
    paths.append(write_losses_csv(result.losses, out_dir / "losses.csv"))
    paths.append(plot_losses(result.losses, out_dir / "losses.png"))
    return paths


def publish(tmp_dir: Path, final_dir: Path) -> Path:
    """Move a finished temp folder into place, replacing an older result of the same name."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    return final_dir
