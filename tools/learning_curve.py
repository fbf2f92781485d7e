"""benchmark3d scores vs kimg for one training run: a JSON table and a PNG plot.

    python tools/learning_curve.py outputs/train/<run> [--out docs/learning_curve.png] [--reuse] \
        [-- <extra gp3d.benchmark3d options, e.g. --num-invert 2 --w-steps 60 --g-steps 30>]

Runs ``gp3d.benchmark3d`` on a random-initialised generator of the run's own configuration (kimg 0,
seeded like the run) and on every ``checkpoints/kimg*.ckpt``, reusing one held-out split, and
plots the scores that say whether the 3D is right: FID/KID on the held-out split, the Wasserstein
distance between generated and true depth distributions, NFS, and (with inversion) the
reconstruction's depth AbsRel and novel-view PSNR.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from gp3d import benchmark3d
from gp3d.inference.portable import EXPORT_FORMAT, EXPORT_VERSION, build, load_generator
from gp3d.utils.checkpoint_io import atomic_torch_save

# (report path, axis label); missing entries (e.g. no inversion) are skipped.
SCORES = [
    (("unconditional", "fid"), "FID (held-out)"),
    (("unconditional", "kid"), "KID (held-out)"),
    (("unconditional", "depth_w1"), "depth W1 vs truth"),
    (("unconditional", "nfs"), "NFS"),
    (("classes", "class_accuracy"), "class accuracy (GAN-test)"),
    (("reconstruction", "abs_rel"), "PTI depth AbsRel"),
    (("reconstruction", "depth_corr"), "PTI depth correlation"),
    (("reconstruction", "novel_psnr"), "PTI novel-view PSNR"),
]


def init_generator(ckpt: Path, out: Path, seed: int) -> Path:
    """A portable generator file with the run's architecture at initialisation (kimg 0)."""
    loaded = load_generator(ckpt)
    torch.manual_seed(seed)
    G = build(loaded.config)
    meta = {**loaded.meta, "kimg": 0.0}
    payload = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": loaded.config,
               "state_dict": G.state_dict(), "meta": meta}  # fmt: skip
    atomic_torch_save(payload, out)
    return out


def lookup(report: dict, path: tuple[str, ...]) -> float | None:
    node = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def _existing(out: Path, point: Path) -> dict | None:
    """``out``'s report when it is of ``point`` (``--reuse``)."""
    path = out / "benchmark3d.json"
    report = json.loads(path.read_text()) if path.is_file() else None
    return report if report and report.get("checkpoint") == str(point) else None


def plot(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [(p, label) for p, label in SCORES if any(lookup(r, p) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 2.8), squeeze=False)
    for ax, (path, label) in zip(axes[0], present):
        pts = [(r["kimg"], lookup(r, path)) for r in rows if lookup(r, path) is not None]
        ax.plot([k for k, _ in pts], [v for _, v in pts], "o-")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run folder (with checkpoints/kimg*.ckpt)")
    ap.add_argument("--out", type=Path, default=None, help="PNG (default <run>/learning_curve.png)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation seed of the kimg-0 point")
    ap.add_argument("--reuse", action="store_true", help="read a point's existing report of the "
                    "same checkpoint instead of rerunning benchmark3d (e.g. after "
                    "--only-reconstruction updates)")  # fmt: skip
    args = ap.parse_args(argv)
    ckpts = sorted((args.run / "checkpoints").glob("kimg*.ckpt"))
    if not ckpts:
        print(f"error: no checkpoints/kimg*.ckpt under {args.run}", file=sys.stderr)
        return 2
    work = args.run / "learning_curve"
    work.mkdir(exist_ok=True)
    points = [init_generator(ckpts[0], work / "init.pt", args.seed), *ckpts]
    rows = []
    for point in points:
        out = work / point.stem
        report = _existing(out, point) if args.reuse else None
        if report is None:
            if benchmark3d.main([str(point), "--out", str(out), "--no-progress", *extra]) != 0:
                return 2
            report = json.loads((out / "benchmark3d.json").read_text())
        rows.append({"checkpoint": str(point), **report, "kimg": float(report.get("kimg") or 0)})
    (work / "learning_curve.json").write_text(json.dumps(rows, indent=2, default=str))
    png = args.out or args.run / "learning_curve.png"
    plot(rows, png, f"benchmark3d vs kimg: {args.run.name}")
    for r in rows:
        scores = ", ".join(
            f"{label}={lookup(r, p):.4g}" for p, label in SCORES if lookup(r, p) is not None
        )
        print(f"kimg {r['kimg']:6.1f}: {scores}")
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
