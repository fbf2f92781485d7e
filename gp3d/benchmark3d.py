"""Held-out 3D benchmark on the synthetic dataset: ``python -m gp3d.benchmark3d CHECKPOINT``.

The synthetic data knows the true depth and camera of every image, so geometry can be scored
against ground truth rather than only by image statistics. Steps (``gp3d/eval3d/``):

1. a held-out split (another seed than training; created once through the data config's
   ``prepare`` node, with ``novel_views`` true renders per sample from other cameras);
2. unconditional scores of generated samples (spec 8.1 protocol): KID and FID against the
   held-out images, NFS (spec 8.2), and depth-distribution scores against the true depth
   (Wasserstein-1 of normalised depth, foreground fraction, depth spread, relief);
3. class recognisability of class-conditional samples: the accuracy of a classifier trained on
   the training split (its held-out accuracy is the ceiling; ``gp3d/eval3d/class_accuracy.py``);
4. single-view 3D reconstruction: PTI inversion of N held-out images under their true camera,
   depth vs true depth (AbsRel, si-log RMSE after median scaling, on the object), and a render
   from a second true camera vs the dataset's render (PSNR, SSIM, LPIPS).

Writes ``benchmark3d.json`` and ``benchmark3d.png`` (rows: input, reconstruction, novel view,
true novel view, rendered depth, true depth) into ``--out`` and prints a table. PTI is slow on
CPU: ``--num-invert``, ``--w-steps``, ``--g-steps``, or ``--no-invert``; ``--only-reconstruction``
redoes step 4 alone into an existing report of the same checkpoint.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import gp3d
from gp3d.data.format import DatasetError
from gp3d.data.truth import load_ground_truth
from gp3d.eval3d import heldout
from gp3d.eval3d.networks import load_lpips, pick_feature_network
from gp3d.eval3d.report import format_table, unconditional_scores, write_report
from gp3d.inference.portable import load_generator


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled)


def _heldout(args, loaded) -> Path:
    data = loaded.meta.get("data", {})
    root = args.heldout_dir or (
        Path(data["path"]).parent if data.get("path") else Path("data") / "cache"
    )
    res = loaded.G.img_resolution
    path = heldout.heldout_path(root, res, args.num_heldout, args.heldout_seed, args.novel_views)
    return heldout.ensure_heldout_split(
        path, res, args.num_heldout, args.heldout_seed, args.novel_views, args.data_config,
        train_seed=heldout.training_seed(data.get("path")),
    )  # fmt: skip


def _class_scores(args, loaded, truth, report: dict) -> None:
    """Class recognisability (``gp3d.eval3d.class_accuracy``) when G is class-conditional and
    its training split can be read (the classifier is trained on it); a note otherwise."""
    from gp3d.eval3d.class_accuracy import class_recognition_scores

    G, data_path = loaded.G, loaded.meta.get("data", {}).get("path")
    if args.class_samples <= 0:
        return
    if G.c_dim == 0:
        report["notes"].append("class accuracy skipped: unconditional generator")
        return
    if not data_path or not Path(data_path).is_dir():
        report["notes"].append(
            f"class accuracy skipped: training split {data_path!r} not found (its classifier "
            "is trained on it)"
        )
        return
    report["classes"] = class_recognition_scores(
        G, data_path, truth.image, truth.label, args.class_samples, args.batch_size, args.seed
    )


def _previous_report(out: Path, checkpoint: str, kimg) -> dict:
    """The report in ``out`` that ``--only-reconstruction`` updates: it must exist and be of the
    same checkpoint at the same kimg (else its other sections would describe another model)."""
    path = out / "benchmark3d.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--only-reconstruction updates {path}, which does not exist: run the full benchmark "
            "into this --out first"
        )
    report = json.loads(path.read_text())
    same = Path(report.get("checkpoint", "")).resolve() == Path(checkpoint).resolve()
    if not same or report.get("kimg") != kimg:
        raise ValueError(
            f"{path} is of {report.get('checkpoint')} at kimg {report.get('kimg')}, not of "
            f"{checkpoint} at kimg {kimg}: rerun the full benchmark (without "
            "--only-reconstruction)"
        )
    return report


def benchmark3d(args: argparse.Namespace) -> dict:
    """Run the benchmark described by the parsed ``args``; returns the report (also written)."""
    from gp3d.eval3d.panel import save_panel
    from gp3d.eval3d.reconstruction import reconstruct

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    if args.only_reconstruction and args.num_invert <= 0:
        raise ValueError("--only-reconstruction needs --num-invert > 0")
    loaded = load_generator(args.checkpoint, device=args.device)
    G = loaded.G
    split = _heldout(args, loaded)
    truth = load_ground_truth(split)
    if args.only_reconstruction:
        report = _previous_report(Path(args.out), args.checkpoint, loaded.meta.get("kimg"))
    else:
        report = _generated_sample_scores(args, loaded, split, truth)
    if args.num_invert > 0:
        t1 = time.perf_counter()
        lpips, lpips_note = load_lpips(args.lpips_weights, args.device)
        if lpips_note and lpips_note not in report["notes"]:
            report["notes"].append(lpips_note)
        n = min(args.num_invert, truth.num_samples)
        bar = _bar(n, "PTI", args.progress)
        recon = reconstruct(
            G, truth, list(range(n)), lpips, args.w_steps, args.g_steps, args.seed,
            progress=lambda: bar.update(1),
        )  # fmt: skip
        bar.close()
        report["reconstruction"] = {
            "num_images": n, "w_steps": args.w_steps, "g_steps": args.g_steps,
            "camera": "true (fixed)", "lpips_net": lpips.net, **recon.summary(),
            "per_image": recon.scores,
        }  # fmt: skip
        report["seconds_per_inversion"] = (time.perf_counter() - t1) / n
        report["panel"] = str(save_panel(recon, truth, Path(args.out) / "benchmark3d.png"))
    report["seconds"] = time.perf_counter() - t0  # this invocation
    report["report"] = str(write_report(report, Path(args.out) / "benchmark3d.json"))
    return report


def _generated_sample_scores(args, loaded, split: Path, truth) -> dict:
    """The report's header, unconditional scores of generated samples, and class accuracy."""
    t0 = time.perf_counter()
    G = loaded.G
    net, net_note = pick_feature_network(args.feature_net, args.device)
    report = {
        "checkpoint": str(args.checkpoint),
        "kimg": loaded.meta.get("kimg"),
        "heldout": {"path": str(split.resolve()), "num_images": truth.num_samples,
                    "seed": args.heldout_seed, "novel_views": truth.num_novel_views},
        "generator_resolution": G.img_resolution,
        "device": str(args.device),
        "seed": args.seed,
        "gp3d_version": gp3d.__version__,
        "feature_net": net.name,
        "notes": [net_note] if net_note else [],
    }  # fmt: skip
    bar = _bar(args.num_fakes, "samples", args.progress)
    report["unconditional"] = unconditional_scores(
        G, net, truth, args.num_fakes, args.num_nfs, args.batch_size,
        loaded.meta.get("data", {}).get("class_counts"), args.seed, bar.update,
    )  # fmt: skip
    bar.close()
    report["seconds_unconditional"] = time.perf_counter() - t0
    _class_scores(args, loaded, truth, report)
    return report


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m gp3d.benchmark3d",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("checkpoint", help="training checkpoint (.ckpt) or gp3d.export file")
    ap.add_argument("--out", default=None, help="output folder (default: next to the checkpoint)")
    ap.add_argument("--data-config", default="synthetic", help="conf/data/<name>.yaml to prepare")
    ap.add_argument("--heldout-dir", default=None, help="where held-out splits live "
                    "(default: next to the training data, else data/cache)")  # fmt: skip
    ap.add_argument("--heldout-seed", type=int, default=1000, help="not the training seed")
    ap.add_argument("--num-heldout", type=int, default=256, help="held-out images (reals)")
    ap.add_argument("--novel-views", type=int, default=1, help="true novel views per image")
    ap.add_argument("--num-fakes", type=int, default=256, help="generated images (KID/FID/W1)")
    ap.add_argument("--num-nfs", type=int, default=64, help="images for NFS")
    ap.add_argument("--class-samples", type=int, default=20, help="samples per class for the "
                    "class accuracy (0 = skip)")  # fmt: skip
    ap.add_argument("--num-invert", type=int, default=4, help="held-out images to invert")
    ap.add_argument("--no-invert", dest="num_invert", action="store_const", const=0)
    ap.add_argument("--w-steps", type=int, default=100, help="PTI stage-1 steps (paper: 450)")
    ap.add_argument("--g-steps", type=int, default=50, help="PTI stage-2 steps (paper: 350)")
    ap.add_argument("--only-reconstruction", action="store_true", help="redo only the PTI "
                    "reconstruction and update it in --out's report of the same checkpoint "
                    "(e.g. other PTI steps or scores); the sample and class scores are kept")  # fmt: skip
    ap.add_argument("--feature-net", default="auto", help="auto (offline Inception if present, "
                    "else fid-helper, else random:64) or any gp3d.evaluate --feature-net")  # fmt: skip
    ap.add_argument("--lpips-weights", default=None, help="local AlexNet weights for LPIPS")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.out is None:
        ckpt = Path(args.checkpoint)
        args.out = str(ckpt.with_name(f"benchmark3d-{ckpt.stem}"))
    try:
        report = benchmark3d(args)
    except (ValueError, FileNotFoundError, RuntimeError, DatasetError) as err:
        print(f"gp3d.benchmark3d: error: {err}", file=sys.stderr)
        return 2
    print(format_table(report))
    print(
        f"report: {report['report']}" + (f"\npanel: {report['panel']}" if "panel" in report else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
