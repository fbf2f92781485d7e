"""Inference entry point: ``python -m gp3d.generate ckpt=<file> [seeds=...] [trajectory=...]``.

Spec 8.3 / 8.4. Loads the EMA generator from a training checkpoint or a portable export
(:func:`gp3d.load_generator`), maps one latent per seed (x class) with class-wise truncation,
places a base camera per class (the mean of 1024 posterior cameras), moves it along a named
trajectory (``conf/trajectory/``) and writes, per group of ``per_grid`` samples:

- ``<trajectory>_<mode>_NN.mp4``: a video grid (nrow = ceil(sqrt(n))), 30 fps, h264 crf 10;
- ``<trajectory>_<mode>_NN.jpg``: an image grid, one row per sample, one column per frame;
- ``mesh_seedSSSS[_classC].ply|obj|glb`` when ``mesh.enabled`` (raw density on a grid,
  marching cubes, vertex colours; spec 8.3; the original's hard-coded crop of the grid suits
  face-forward data only and is off unless ``mesh.crop=true``);
- ``samples.json``: which seed and class each grid cell shows.

Frames stream into the video as they are rendered and rays render in chunks, so any
``resolution`` fits in memory.
"""

import json
import logging
import math
import os
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from gp3d.inference import sampling as inference
from gp3d.inference.mesh import save_mesh
from gp3d.inference.portable import LoadedGenerator, load_generator
from gp3d.inference.trajectories import mean_camera
from gp3d.types import CameraParams, RenderOutput
from gp3d.utils.env import pick_device
from gp3d.utils.media import VideoWriter, colorize_depth, make_grid, save_array, tile, to_uint8

log = logging.getLogger("gp3d.generate")
MODES = ("rgb", "depth", "both")


SATURATED_SHARE = 0.9  # warn when this share of depth pixels is past the displayed range


def resolve_samples(g: LoadedGenerator, seeds, classes) -> list[tuple[int, int | None]]:
    """(seed, class) pairs: every class x every seed; classes None -> seed % num_classes."""
    seeds = [int(s) for s in (seeds if isinstance(seeds, list | tuple) else [seeds])]
    if not seeds:
        raise ValueError("no seeds given: pass e.g. seeds=[0,1,2,3]")
    if g.num_classes == 0:
        if classes:
            raise ValueError("this generator is unconditional: drop `classes`")
        return [(s, None) for s in seeds]
    if classes is None:
        return [(s, s % g.num_classes) for s in seeds]
    classes = classes if isinstance(classes, list | tuple) else [classes]
    return [(s, g.class_index(c)) for c in classes for s in seeds]


def display(out: RenderOutput, mode: str, depth_range, colormap: str) -> torch.Tensor:
    """[B, 3, H, W] (rgb / depth) or [B, 3, H, 2W] (both, side by side) in [-1, 1]."""
    depth = lambda: colorize_depth(out.depth, *depth_range, colormap)  # noqa: E731
    if mode == "rgb":
        return out.rgb.clamp(-1, 1)
    if mode == "depth":
        return depth()
    if mode == "both":
        return torch.cat([out.rgb.clamp(-1, 1), depth()], dim=-1)
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")


def base_cameras(g: LoadedGenerator, labels: list[int | None], cfg: DictConfig) -> CameraParams:
    """One base camera per sample: the per-class posterior mean (cached per class) or the
    centre of the prior box."""
    if not cfg.camera.use_mean_camera:
        return mean_camera(g.G.camera_prior, len(labels), g.device)
    cache: dict = {}
    for lab in dict.fromkeys(labels):
        cache[lab] = g.mean_camera(None if lab is None else [lab], cfg.camera.num_samples)
    return CameraParams.cat([cache[lab] for lab in labels])


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def check_config(cfg: DictConfig) -> None:
    """Reject a config that cannot run, before anything is loaded or written."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ValueError(
            "no checkpoint given: pass ckpt=<run>/checkpoints/last.ckpt or a file written by "
            "`python -m gp3d.export`"
        )
    if cfg.mode not in MODES:
        raise ValueError(f"mode={cfg.mode!r}; choose one of {MODES}")
    unknown = set(cfg.outputs) - {"video", "image_grid"}
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from video, image_grid")
    for key in ("per_grid", "batch_size", "resolution", "steps_multiplier", "camera.num_samples"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}={value!r}: must be a positive integer")
    if not isinstance(cfg.chunk_rays, int) or cfg.chunk_rays < 0:
        raise ValueError(f"chunk_rays={cfg.chunk_rays!r}: must be >= 0 (0 = one shot)")


def generate(cfg: DictConfig) -> dict[str, list[Path]]:
    """Run the whole inference protocol of ``cfg`` (conf/generate.yaml); returns written paths:
    per group of ``per_grid`` samples, tri-planes once, then every trajectory frame rendered from
    them into a video and/or an image grid, and optionally one mesh per sample."""
    check_config(cfg)
    g = load_generator(cfg.ckpt, device=pick_device(cfg.device))
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = resolve_samples(g, OmegaConf.to_object(cfg.seeds), _plain(cfg.classes))
    trajectory = instantiate(cfg.trajectory)
    name = cfg.trajectory._target_.rsplit(".", 1)[-1]
    near, far = g.G.renderer.near, g.G.renderer.far
    depth_range = tuple(cfg.depth_range) if cfg.depth_range is not None else (near, far)
    bounds = g.G.camera_prior.bounds() if cfg.camera.clamp_to_prior else None
    written: dict[str, list[Path]] = {"video": [], "image_grid": [], "mesh": []}
    index: list[dict] = []
    beyond: list[float] = []  # per frame: the share of depth pixels past the displayed range

    for gi in range(0, len(samples), cfg.per_grid):
        group, grid = samples[gi : gi + cfg.per_grid], gi // cfg.per_grid
        planes = _group_planes(g, group, cfg)
        cams = trajectory(base_cameras(g, [c for _, c in group], cfg), bounds=bounds)
        stem = out_dir / f"{name}_{cfg.mode}_{grid:02d}"
        for kind, path in _render_group(g, planes, cams, cfg, depth_range, beyond, stem):
            written[kind].append(path)
        index += _index_entries(g, group, grid)
        if cfg.mesh.enabled:
            written["mesh"] += _meshes(g, group, cfg, out_dir)
        log.info("grid %d: %d samples x %d frames", grid, len(group), len(cams))

    _write_json(
        {"ckpt": str(cfg.ckpt), "trajectory": name, "samples": index}, out_dir / "samples.json"
    )
    _warn_if_saturated(cfg, beyond, depth_range)
    return written


def _group_planes(g: LoadedGenerator, group, cfg: DictConfig) -> torch.Tensor:
    """Tri-planes of one group's (seed, class) samples, in sub-batches of ``batch_size``."""
    z = g.latents([s for s, _ in group])
    labels = [c for _, c in group]
    c = None if labels[0] is None else labels
    parts = [
        g.planes(
            z[i : i + cfg.batch_size],
            None if c is None else c[i : i + cfg.batch_size],
            cfg.truncation_psi,
            "const",
            cfg.class_mean_samples,
        )
        for i in range(0, len(group), cfg.batch_size)
    ]
    return torch.cat(parts)


def _render_group(g, planes, cams, cfg, depth_range, beyond, stem: Path):
    """Render every frame of the trajectory; yield (kind, path) of the video and image grid.
    A video cut short by an error is deleted, never left half-written."""
    n = planes.shape[0]
    video = None
    if "video" in cfg.outputs:
        video = VideoWriter(stem.with_suffix(f".{cfg.video.format}"), cfg.video.fps, cfg.video.crf)
    rows: list[list[np.ndarray]] = [[] for _ in range(n)]
    try:
        for cam in cams:
            cells = _frame_cells(g, planes, cam, cfg, depth_range, beyond)
            if video is not None:
                video.append(make_grid(cells, nrow=math.ceil(math.sqrt(n))))
            if "image_grid" in cfg.outputs:
                for row, cell in zip(rows, cells):
                    row.append(to_uint8(cell))
        if video is not None:
            yield "video", video.close()
    except BaseException:
        if video is not None:
            video.abort()
        raise
    if "image_grid" in cfg.outputs:
        path = stem.with_suffix(f".{cfg.image_grid.format}")
        yield "image_grid", save_array(tile(rows), path, cfg.image_grid.quality)


def _index_entries(g: LoadedGenerator, group, grid: int) -> list[dict]:
    """samples.json rows: where each (seed, class) sits in the outputs."""
    names = g.class_names or []
    return [
        {
            "grid": grid,
            "cell": k,
            "seed": seed,
            "class": lab,
            "class_name": names[lab] if lab is not None and lab < len(names) else None,
        }
        for k, (seed, lab) in enumerate(group)
    ]


def _warn_if_saturated(cfg: DictConfig, beyond: list[float], depth_range) -> None:
    """Most depth pixels past the displayed range means one-colour depth images: say why."""
    if cfg.mode != "rgb" and beyond and sum(beyond) / len(beyond) > SATURATED_SHARE:
        log.warning(
            "%.0f%% of depth pixels lie beyond the displayed range %s (far_offset=%s renders past "
            "the scene box, where an under-trained model accumulates haze): the depth images are "
            "mostly one colour; try far_offset=0 or depth_range=[lo,hi]",
            100 * sum(beyond) / len(beyond), list(depth_range), cfg.far_offset,
        )  # fmt: skip


def _frame_cells(
    g: LoadedGenerator, planes, cam: CameraParams, cfg, depth_range, beyond: list[float]
) -> torch.Tensor:
    """One trajectory frame of a group of samples, in sub-batches: display cells on the CPU;
    appends the share of depth pixels past ``depth_range`` to ``beyond``."""
    cells, far_pixels = [], 0.0
    for i in range(0, planes.shape[0], cfg.batch_size):
        out = inference.render_planes(
            g.G,
            planes[i : i + cfg.batch_size],
            cam[i : i + cfg.batch_size],
            cfg.resolution,
            cfg.render_seed,
            cfg.chunk_rays,
            cfg.steps_multiplier,
            cfg.far_offset,
        )
        cells.append(display(out, cfg.mode, depth_range, cfg.depth_colormap).cpu())
        far_pixels += (out.depth >= depth_range[1]).sum().item()
    beyond.append(far_pixels / (planes.shape[0] * cfg.resolution**2))
    return torch.cat(cells)


def _meshes(g: LoadedGenerator, group, cfg: DictConfig, out_dir: Path) -> list[Path]:
    m = cfg.mesh
    paths = []
    for seed, lab in group:
        mesh = g.mesh(
            g.latents([seed]),
            None if lab is None else [lab],
            truncation_psi=m.truncation_psi,
            resolution=m.resolution,
            side=m.side,
            center=tuple(m.center),
            threshold=m.threshold,
            crop=m.crop,
            keep_largest=m.largest_component,
        )
        tag = f"mesh_seed{seed:04d}" + ("" if lab is None else f"_class{lab}")
        paths.append(save_mesh(mesh, out_dir / f"{tag}.{m.format}"))
    return paths


def _plain(node):
    return OmegaConf.to_object(node) if OmegaConf.is_config(node) else node


@hydra.main(config_path="../conf", config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        written = generate(cfg)
    except (ValueError, FileNotFoundError) as err:  # bad input: a message, not a traceback
        log.error("%s", err)
        raise SystemExit(2) from None
    for kind, paths in written.items():
        for p in paths:
            print(f"{kind}: {p}")


if __name__ == "__main__":
    main()
