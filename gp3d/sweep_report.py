"""``python -m gp3d.sweep_report SWEEP_DIR [--metrics val/fid2k ...]``: what a Hydra multirun found.

Prints one row per run (the overrides that differ between runs, final and best value of each
metric, kimg, wall time, status and why a run failed, diverged, stopped or is unfinished) and
writes ``sweep_report.csv`` and ``sweep_curves.png`` (metric curves, one line per run) into the
sweep folder (or ``--out``). See gp3d/sweeps/report.py.
"""

import argparse
import sys
from pathlib import Path

from gp3d.sweeps.report import (
    default_metrics,
    format_table,
    plot_curves,
    run_folders,
    summarize_run,
    table_rows,
    write_csv,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gp3d.sweep_report", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (hydra.sweep.dir)")
    parser.add_argument(
        "--metrics", nargs="+", help="metrics to report (default: optimized_metric and all val/)"
    )
    parser.add_argument(
        "--maximize",
        nargs="*",
        default=[],
        help="metrics where larger is better (besides NFS, PSNR, SSIM, IS, precision, recall)",
    )
    parser.add_argument("--out", type=Path, help="folder for the CSV and PNG (default: sweep_dir)")
    args = parser.parse_args(argv)

    folders = run_folders(args.sweep_dir)
    if not folders:
        print(
            f"error: {args.sweep_dir} has no run folders (subfolders with .hydra/); pass the "
            "multirun folder, e.g. outputs/train/multirun_2026-01-01_12-00-00",
            file=sys.stderr,
        )
        return 2
    runs = [summarize_run(p) for p in folders]
    metrics = args.metrics or default_metrics(runs)
    rows = table_rows(runs, metrics, set(args.maximize))
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "sweep_report.csv")
    plot_curves(runs, metrics, out / "sweep_curves.png")
    print(format_table(rows))
    bad = [r for r in runs if r.status != "ok"]
    print(
        f"\n{len(runs)} runs, {len(runs) - len(bad)} ok, {len(bad)} not ok; wrote "
        f"{out / 'sweep_report.csv'} and {out / 'sweep_curves.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
