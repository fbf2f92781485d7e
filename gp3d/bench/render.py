"""Video-rendering speed and memory: frames per second of trajectory frames (spec 8.4 settings:
ray steps x 2, far + 1) from a randomly initialised generator, and the peak memory of chunked
versus one-shot rendering.

    python -m gp3d.bench.render                                   # small model, CPU, 256x256
    python -m gp3d.bench.render --chunk-rays 16384 4096 0 --memory
    python -m gp3d.bench.render --size full --device cuda --resolution 512

Each chunk size runs in its own process when ``--memory`` is given, so that the peak resident
memory (CPU) or the peak CUDA allocation belongs to that setting alone. Absolute numbers only
hold on the machine they were measured on.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from gp3d.bench.train_step import SYNTHETIC_SIZES
from gp3d.inference import sampling as inference
from gp3d.inference.trajectories import front_circle, mean_camera

CONF = str(Path(__file__).resolve().parents[2] / "conf")
SIZES = {"small": SYNTHETIC_SIZES, "full": ["data.resolution=256"]}  # full = the original's


def build_generator(size: str, device: str, num_classes: int = 10):
    overrides = ["experiment=3dgp", *SIZES[size], f"model.c_dim={num_classes}", "model.kd_dim=0"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.model.generator).eval().requires_grad_(False).to(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@torch.no_grad()
def measure(args, chunk_rays: int) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    G = build_generator(args.size, args.device)
    z = inference.latents(range(args.batch), G.z_dim, device)
    c = inference.one_hot([0] * args.batch, G.c_dim, args.batch, device)
    cams = front_circle(mean_camera(G.camera_prior, args.batch, device), args.frames + 1)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    planes = G.synthesis(inference.truncated_ws(G, z, c, 0.7), noise_mode="const")
    sync()
    t_synth = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_memory_mib(device)

    def frame(cam):
        return inference.render_planes(
            G,
            planes,
            cam,
            args.resolution,
            seed=0,
            chunk_rays=chunk_rays,
            steps_multiplier=args.steps_multiplier,
            far_offset=1.0,
        )

    frame(cams[0])  # warm-up (allocator, kernels)
    sync()
    t0 = time.perf_counter()
    for cam in cams[1:]:
        frame(cam)
    sync()
    dt = time.perf_counter() - t0
    n = args.frames * args.batch
    return {
        "size": args.size,
        "device": str(device),
        "resolution": args.resolution,
        "steps_per_ray": (G.renderer.num_coarse + G.renderer.num_fine) * args.steps_multiplier,
        "chunk_rays": chunk_rays,
        "batch": args.batch,
        "frames_per_s": n / dt,
        "s_per_frame": dt / n,
        "synthesis_s": t_synth,
        "peak_mib": peak_memory_mib(device),
        "peak_increase_mib": peak_memory_mib(device) - (before if device.type != "cuda" else 0),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m gp3d.bench.render", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps-multiplier", type=int, default=2)
    p.add_argument("--chunk-rays", type=int, nargs="+", default=[16384])
    p.add_argument("--memory", action="store_true", help="one process per chunk size")
    p.add_argument("--json", action="store_true", help="print one JSON line per setting")
    args = p.parse_args(argv)
    results = []
    for chunk in args.chunk_rays:
        if args.memory and len(args.chunk_rays) > 1:
            cmd = [sys.executable, "-m", "gp3d.bench.render", "--json", "--chunk-rays", str(chunk)]
            for k in ("size", "device", "resolution", "frames", "batch", "steps_multiplier"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        else:
            results.append(measure(args, chunk))
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['size']:5s} {r['device']:5s} {r['resolution']}px {r['steps_per_ray']} steps/ray "
                f"chunk={r['chunk_rays'] or 'one-shot':>8}: {r['frames_per_s']:.3f} frames/s "
                f"({r['s_per_frame']:.2f} s/frame), peak {r['peak_mib']:.0f} MiB "
                f"(+{r['peak_increase_mib']:.0f} while rendering), {r['threads']} threads"
            )


if __name__ == "__main__":
    main()
