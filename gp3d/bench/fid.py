"""Cost of FID evaluation: one fid<N> (render + features) as a fraction of the training time
between two evaluations, and seconds for the real statistics of N images per core.

    python -m gp3d.bench.fid                                  # synthetic sizes, CPU
    python -m gp3d.bench.fid --size full --resolution 256 --fakes 4 --train-steps 2
    python -m gp3d.bench.fid --feature-nets random:64 fid-helper --json out.json

Every time is measured on a few items in this process and scaled linearly to the target counts
(rendering and feature extraction are per-image costs). The training time per iteration comes
from ``gp3d.bench.train_step`` (same experiment and sizes), so the fraction is measured in one run. On a
shared machine the fastest repeat of each measurement is used (the least disturbed one).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gp3d.bench.train_step import SIZES, bench, build
from gp3d.metrics.fakes import render_uint8
from gp3d.metrics.feature_net import load_feature_network
from gp3d.metrics.fid import FeatureStats, frechet_distance
from gp3d.metrics.real_stats import compute_real_stats


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def time_per_fake(G, nets: dict, n: int, batch_size: int, device: str) -> dict[str, float]:
    """Seconds per image: full render + uint8 conversion, and each network's features. The
    fastest batch counts (the machine is shared: the minimum is the least disturbed figure)."""
    G.eval()
    warm = render_uint8(G, batch_size, seed=0)  # warm-up: allocations, lazy init and
    for net in nets.values():  # TorchScript's profiling runs
        net(warm), net(warm)
    t_render, feats = [], {k: [] for k in nets}
    for b in range(max(1, n // batch_size)):
        _sync(device)
        start = time.perf_counter()
        images = render_uint8(G, batch_size, seed=b)
        _sync(device)
        t_render.append(time.perf_counter() - start)
        for name, net in nets.items():
            start = time.perf_counter()
            net(images)
            _sync(device)
            feats[name].append(time.perf_counter() - start)
    out = {"render": min(t_render) / batch_size}
    out.update({f"features[{k}]": min(v) / batch_size for k, v in feats.items()})
    return out


def time_distance(dim: int, n: int) -> float:
    """Seconds for the statistics of n features and the Fréchet distance at ``dim``."""
    x, y = torch.randn(n, dim), torch.randn(n, dim) + 0.1
    ref = FeatureStats.of(y)
    start = time.perf_counter()
    s = FeatureStats.of(x)
    frechet_distance(s.mean, s.cov, ref.mean, ref.cov)
    return time.perf_counter() - start


def time_per_real(
    nets: dict, resolution: int, n: int, device: str, repeats: int = 2
) -> dict[str, float]:
    """Seconds per real image (shard read + PNG decode + features), one reader process; the
    fastest of ``repeats`` passes."""
    from omegaconf import OmegaConf

    from gp3d.data.format import read_manifest
    from gp3d.data.prepare import run_prepare

    prepare = OmegaConf.load(
        Path(__file__).resolve().parents[2] / "conf" / "data" / "synthetic.yaml"
    ).prepare

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reals"
        run_prepare(
            prepare, path=str(path), num_samples=n, resolution=resolution, seed=0, teacher=None
        )
        manifest = read_manifest(path)
        for name, net in nets.items():
            runs = [
                compute_real_stats(str(path), manifest, net, batch_size=32, device=device)
                for _ in range(repeats)
            ]
            out[name] = min(r.meta["seconds"] / r.n for r in runs)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--experiment", default="3dgp")
    ap.add_argument("--size", choices=SIZES, default="synthetic")
    ap.add_argument("--resolution", type=int, default=None, help="image size (default: config)")
    ap.add_argument("--feature-nets", nargs="+", default=["random:64", "fid-helper"])
    ap.add_argument("--num-samples", type=int, default=2048, help="fakes per evaluation (fid2k)")
    ap.add_argument("--interval-kimg", type=float, default=100.0, help="evaluation interval")
    ap.add_argument("--fakes", type=int, default=32, help="fakes actually timed")
    ap.add_argument("--fake-batch", type=int, default=4, help="the original's batch_gen")
    ap.add_argument("--reals", type=int, default=128, help="real images actually timed")
    ap.add_argument("--real-images", type=int, default=4096, help="N of the real-stats figure")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16, help="training batch")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2, help="training timings; the fastest counts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    threads = torch.get_num_threads()
    nets = {}
    for spec in args.feature_nets:
        try:
            nets[spec] = load_feature_network(spec, device=args.device)
        except (ModuleNotFoundError, RuntimeError, FileNotFoundError) as err:
            print(f"skipping {spec}: {err}")
    extra = [f"data.resolution={args.resolution}"] if args.resolution else []
    model, cfg = build(args.experiment, args.size, args.batch_size, args.num_classes, extra)
    G = model.G_ema.to(args.device)
    res = int(cfg.data.resolution)
    per_fake = time_per_fake(G, nets, args.fakes, args.fake_batch, args.device)
    per_real = time_per_real(nets, res, args.reals, args.device)
    s_iter = min(
        bench(
            args.experiment,
            args.size,
            args.train_steps,
            1,
            args.batch_size,
            args.device,
            args.num_classes,
            extra,
        )["s_per_iter"]  # fmt: skip
        for _ in range(args.repeats)
    )
    train_s = s_iter * args.interval_kimg * 1000 / args.batch_size
    results = {
        "size": args.size,
        "resolution": res,
        "device": args.device,
        "threads": threads,
        "train_s_per_iter": s_iter,
        "train_s_per_interval": train_s,
        "render_s_per_fake": per_fake["render"],
        "networks": {},
    }
    print(
        f"{args.experiment} {args.size} ({res}px, {args.device}, {threads} threads): "
        f"train {s_iter:.3f} s/iter at batch {args.batch_size} -> "
        f"{train_s / 3600:.2f} h per {args.interval_kimg:g} kimg; "
        f"render {per_fake['render']:.4f} s/fake"
    )
    head = f"{'network':<34}{'feat s/img':>11}{'fid s':>10}{'fraction':>10}{'real s/img/core':>17}"
    print(head + f"{'reals ' + str(args.real_images) + ' s':>14}")
    for name in nets:
        feat = per_fake[f"features[{name}]"]
        dist_s = time_distance(nets[name].dim, args.num_samples)
        fid_s = args.num_samples * (per_fake["render"] + feat) + dist_s
        real_core = per_real[name] * threads  # core-seconds per image
        results["networks"][name] = {
            "feature_net": nets[name].name,
            "features_s_per_image": feat,
            "stats_and_distance_s": dist_s,
            "fid_eval_s": fid_s,
            "fraction_of_training": fid_s / train_s,
            "real_s_per_image_per_core": real_core,
            "real_stats_s_per_core": real_core * args.real_images,
        }
        r = results["networks"][name]
        print(
            f"{nets[name].name:<34}{feat:>11.4f}{fid_s:>10.1f}{r['fraction_of_training']:>10.4f}"
            f"{real_core:>17.4f}{r['real_stats_s_per_core']:>14.1f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
