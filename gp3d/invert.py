"""``python -m gp3d.invert CKPT IMAGE_OR_FOLDER``: single-image 3D reconstruction by PTI.

Each image is inverted into the generator (spec multiview_pti 1.5: stage 1 fits the pivot
latent, stage 2 fine-tunes a copy of the generator around it) and gets its own folder
``OUT/<image stem>/`` with the files listed in :mod:`gp3d.inversion.outputs`. Every input is
checked before anything is written (bad input: one line on stderr, exit code 2), and each
folder is written under a temporary name and renamed when complete.

Classes: ``--class K`` (index or recorded class name), or ``--class-search TOPK``: every class
is scored by the loss of its class-mean render, the TOPK best get a short stage-1 fit each
(``--search-steps``), and the lowest final loss wins (:mod:`gp3d.inversion.class_search`).
"""

import argparse
import os
import shutil
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from gp3d.inference.portable import LoadedGenerator, load_generator
from gp3d.inversion import invert
from gp3d.inversion.class_search import search_class
from gp3d.inversion.inputs import DEPTH_SUFFIX, list_images, load_depth, load_image
from gp3d.inversion.outputs import publish, write_outputs
from gp3d.metrics.lpips import build_lpips
from gp3d.utils.env import pick_device


@dataclass
class Job:
    """One image to invert, already read and checked."""

    image: Path
    target: torch.Tensor  # [1, 3, R, R] in [-1, 1]
    depth: torch.Tensor | None  # [1, 1, R, R]
    name: str  # output folder name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gp3d.invert",
        description="Reconstruct a 3D scene from one photo by Pivotal Tuning Inversion of a "
        "gp3d generator; writes a reconstruction, turntable video, depth, mesh, the tuned "
        "generator and the loss curve per image.",
    )
    p.add_argument("checkpoint", help="training checkpoint (.ckpt) or portable generator file")
    p.add_argument("images", help="an image file, or a folder of images (processed one by one)")
    cls = p.add_mutually_exclusive_group()
    cls.add_argument("--class", dest="class_", metavar="K", help="class index or name")
    cls.add_argument(
        "--class-search", type=int, metavar="TOPK", help="pick the class: short fits of the TOPK"
    )
    p.add_argument("--search-steps", type=int, default=50, help="stage-1 steps per searched class")
    p.add_argument("--camera", choices=("fixed", "optimise"), default="fixed")
    p.add_argument(
        "--depth", metavar="FILE", help=f"target depth map (16-bit PNG or .npy); in a folder, "
        f"<image>{DEPTH_SUFFIX} files next to the images are used",
    )  # fmt: skip
    p.add_argument("--out", default="outputs/invert", help="output folder")
    p.add_argument("--w-steps", type=int, default=450, help="stage-1 steps (PTI: 450)")
    p.add_argument("--g-steps", type=int, default=350, help="stage-2 steps (PTI: 350)")
    p.add_argument("--w-space", choices=("w", "w+"), default="w")
    p.add_argument(
        "--lpips-threshold", type=float, default=0.07, help="stage-2 early stop (0 = never)"
    )
    p.add_argument("--resolution", type=int, help="render resolution (default: the generator's)")
    p.add_argument("--lpips-weights", metavar="FILE", help="torchvision alexnet weights file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=48, help="turntable frames")
    p.add_argument("--mesh-resolution", type=int, default=128)
    p.add_argument("--mesh-threshold", type=float, default=25.0, help="raw density iso-level")
    return p


def _class_index(g: LoadedGenerator, args, checkpoint: str) -> int | None:
    if g.num_classes == 0:
        if args.class_ is not None or args.class_search is not None:
            raise ValueError(f"{checkpoint} is unconditional: drop --class / --class-search")
        return None
    if args.class_ is None and args.class_search is None:
        raise ValueError(
            f"{checkpoint} is class-conditional ({g.num_classes} classes): pass --class K "
            "or --class-search TOPK"
        )
    if args.class_ is None:
        return None
    try:
        return g.class_index(args.class_)
    except ValueError as err:
        raise ValueError(f"--class {args.class_}: {err}") from None


def _jobs(args, resolution: int) -> list[Job]:
    images = list_images(args.images)
    if args.depth is not None and len(images) > 1:
        raise ValueError(
            f"--depth takes one image; for the folder {args.images} put <image>{DEPTH_SUFFIX} "
            "files next to the images instead"
        )
    stems = [p.stem for p in images]
    jobs = []
    for p in images:
        target, size = load_image(p, resolution)
        depth_file = Path(args.depth) if args.depth else p.with_name(p.stem + DEPTH_SUFFIX)
        if args.depth and not depth_file.is_file():
            raise FileNotFoundError(f"--depth {depth_file} does not exist")
        depth = load_depth(depth_file, size, resolution) if depth_file.is_file() else None
        name = p.stem if stems.count(p.stem) == 1 else p.name.replace(".", "_")
        jobs.append(Job(p, target, depth, name))
    return jobs


def prepare(args) -> tuple[LoadedGenerator, torch.nn.Module, int | None, list[Job]]:
    """Load and check everything (nothing is written): ValueError / FileNotFoundError."""
    for flag in ("w_steps", "g_steps", "frames", "search_steps"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0")
    if args.class_search is not None and args.class_search < 1:
        raise ValueError("--class-search TOPK needs TOPK >= 1")
    device = pick_device(args.device)
    g = load_generator(args.checkpoint, device=device)
    class_index = _class_index(g, args, args.checkpoint)
    resolution = args.resolution or g.G.img_resolution
    if resolution < 8:
        raise ValueError(f"--resolution {resolution} is too small; use at least 8")
    jobs = _jobs(args, resolution)
    lpips = build_lpips("alex", args.lpips_weights).to(device)
    return g, lpips, class_index, jobs


def run_job(g: LoadedGenerator, lpips, class_index: int | None, job: Job, args) -> Path:
    device = g.device
    target = job.target.to(device)
    depth = None if job.depth is None else job.depth.to(device)
    if class_index is None and g.num_classes > 0:
        class_index, finals = search_class(
            g.G, target, lpips, args.class_search, args.search_steps, depth,
            args.camera == "optimise", args.seed,
        )  # fmt: skip
        print(f"{job.image}: class search {finals} -> class {class_index}")
    start = time.perf_counter()
    result = invert(
        g.G, target, class_index, depth=depth, w_steps=args.w_steps, g_steps=args.g_steps,
        camera_mode=args.camera, lpips=lpips, seed=args.seed, w_space=args.w_space,
        lpips_threshold=args.lpips_threshold,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    out_root = Path(args.out)
    tmp = out_root / f".{job.name}.tmp-{os.getpid()}"
    try:
        write_outputs(
            result, target, tmp, job.image, class_index, g.config, g.meta, args.frames,
            mesh_resolution=args.mesh_resolution, mesh_threshold=args.mesh_threshold,
        )  # fmt: skip
        final = publish(tmp, out_root / job.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = result.losses[-1] if result.losses else {}
    print(f"{job.image}: {seconds:.1f} s, LPIPS {last.get('lpips', float('nan')):.4f} -> {final}")
    return final


def main(argv: list[str] | None = None) -> list[Path]:
    args = build_parser().parse_args(argv)
    try:
        g, lpips, class_index, jobs = prepare(args)
    except (ValueError, FileNotFoundError) as err:  # bad input: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return [run_job(g, lpips, class_index, job, args) for job in jobs]


class _CallableModule(types.ModuleType):
    """``gp3d.invert`` is both this command's module and the API function (a lazy export of
    ``gp3d/__init__.py``). Importing this module rebinds the attribute ``gp3d.invert`` to the
    module, so the module forwards calls to :func:`gp3d.inversion.invert`."""

    def __call__(self, *args, **kwargs):
        return invert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
