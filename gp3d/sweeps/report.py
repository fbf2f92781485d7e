"""The sweep report's content: one row per run folder of a Hydra multirun (its overrides, final
and best value of each chosen metric, kimg, wall time, status and why), as text, CSV and a figure
of the metric curves. Reads only what runs leave on disk: ``.hydra/overrides.yaml`` and
``config.yaml``, ``logs/metrics.csv`` (CSVLogger), ``run.json`` / ``failure.txt``
(gp3d.sweeps.record) and ``checkpoints/last.ckpt``.
"""

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from gp3d.sweeps.metrics_csv import (
    METRICS_CSV,
    MetricHistory,
    best_value,
    diverged,
    read_metrics_csv,
)
from gp3d.sweeps.record import FAILURE_TXT, read_run_json

# Metrics where larger is better; every other metric is minimised (FID, KID, losses, errors).
MAXIMIZED = re.compile(r"(^|/)(nfs|psnr|ssim|is|precision|recall|acc)[^/]*$")


@dataclass
class RunSummary:
    name: str
    overrides: list[str]
    history: MetricHistory
    kimg: float
    total_kimg: float | None
    wall_s: float | None
    status: str  # ok | stopped | diverged | failed | unfinished
    reason: str
    optimized_metric: str | None = None
    optimized_direction: str = "minimize"
    extra: dict = field(default_factory=dict)


def run_folders(sweep_dir: str | os.PathLike) -> list[Path]:
    """The run folders of a sweep: subfolders holding ``.hydra/``, in job order."""
    root = Path(sweep_dir)
    found = [p for p in root.iterdir() if (p / ".hydra").is_dir()] if root.is_dir() else []

    def order(p: Path) -> tuple:
        return (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name)

    return sorted(found, key=order)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def classify(
    record: dict | None,
    history: MetricHistory,
    kimg: float,
    total_kimg: float | None,
    has_last_ckpt: bool,
    failure_text: str | None,
) -> tuple[str, str]:
    """Status and reason of one run. Pure: every input is what the run left on disk."""
    progress = f"{kimg:g} kimg" if math.isfinite(kimg) else "no progress logged"
    ckpt = "last.ckpt present" if has_last_ckpt else "no last.ckpt"
    if record is None:
        if failure_text:
            return "failed", _first_line(failure_text.strip().splitlines()[-1])
        return "unfinished", f"no run.json (killed before it started?); {progress}, {ckpt}"
    status = record.get("status")
    if status == "failed":
        return "failed", _first_line(record.get("error")) or "see failure.txt"
    if status == "running":
        return "unfinished", f"no end recorded: still running or killed; {progress}, {ckpt}"
    if status == "stopped":
        return "stopped", f"{_first_line(record.get('error')) or 'stopped'}; {progress}, {ckpt}"
    bad = diverged(history)
    objective = record.get("objective")
    if bad:
        return "diverged", "non-finite " + ", ".join(bad)
    if objective is not None and not math.isfinite(float(objective)):
        return "diverged", "objective (optimized_metric) is not finite"
    if total_kimg and math.isfinite(kimg) and kimg < total_kimg * (1 - 1e-6):
        return "stopped", f"ended at {kimg:g} of {total_kimg:g} kimg (signal?); {ckpt}"
    if not has_last_ckpt:
        return "ok", "finished, but no last.ckpt"
    return "ok", ""


def summarize_run(run_dir: Path) -> RunSummary:
    hydra_dir = run_dir / ".hydra"
    overrides_file = hydra_dir / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    cfg = (
        OmegaConf.load(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").is_file() else None
    )
    total = OmegaConf.select(cfg, "model.total_kimg") if cfg is not None else None
    metrics_file = run_dir / METRICS_CSV
    history = read_metrics_csv(metrics_file) if metrics_file.is_file() else MetricHistory()
    record = read_run_json(run_dir)
    kimg = history.last_kimg()
    if record and record.get("kimg") is not None:
        kimg = float(record["kimg"])
    failure = run_dir / FAILURE_TXT
    status, reason = classify(
        record,
        history,
        kimg,
        float(total) if total is not None else None,
        (run_dir / "checkpoints" / "last.ckpt").is_file(),
        failure.read_text() if failure.is_file() else None,
    )
    wall = record.get("wall_s") if record else None
    return RunSummary(
        name=run_dir.name,
        overrides=overrides,
        history=history,
        kimg=kimg,
        total_kimg=float(total) if total is not None else None,
        wall_s=float(wall) if wall is not None else None,
        status=status,
        reason=reason,
        optimized_metric=OmegaConf.select(cfg, "optimized_metric") if cfg is not None else None,
        optimized_direction=(
            OmegaConf.select(cfg, "optimized_direction") if cfg is not None else None
        )
        or "minimize",
    )


def varying_overrides(runs: list[RunSummary]) -> list[list[str]]:
    """Each run's overrides, keeping only the keys whose values differ between runs (all of
    them when there is one run or none differ)."""
    values: dict[str, set[str]] = {}
    for run in runs:
        for o in run.overrides:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    keys_everywhere = [{o.partition("=")[0] for o in r.overrides} for r in runs]
    varying = {
        k for k, v in values.items() if len(v) > 1 or any(k not in keys for keys in keys_everywhere)
    }
    if not varying:
        return [list(r.overrides) for r in runs]
    return [[o for o in r.overrides if o.partition("=")[0] in varying] for r in runs]


def direction_of(metric: str, runs: list[RunSummary], maximize: set[str]) -> str:
    for run in runs:
        if run.optimized_metric == metric:
            return run.optimized_direction
    return "maximize" if metric in maximize or MAXIMIZED.search(metric) else "minimize"


def default_metrics(runs: list[RunSummary]) -> list[str]:
    """The optimized metric and every ``val/`` metric (not the ``_sec`` timings); the G and D
    losses when no run logged a validation metric."""
    names: list[str] = []
    for run in runs:
        if run.optimized_metric and run.optimized_metric not in names:
            names.append(run.optimized_metric)
    for run in runs:
        for n in run.history.names():
            if n.startswith("val/") and not n.endswith("_sec") and n not in names:
                names.append(n)
    return names or ["train/loss_G", "train/loss_D"]


def table_rows(
    runs: list[RunSummary], metrics: list[str], maximize: set[str] | None = None
) -> list[dict[str, str]]:
    """One dict per run: run, overrides, <metric> final / best, kimg, wall_s, status, reason."""
    shown = varying_overrides(runs)
    rows = []
    for run, overrides in zip(runs, shown):
        row = {"run": run.name, "overrides": " ".join(overrides)}
        for m in metrics:
            values = run.history.values(m)
            direction = direction_of(m, runs, maximize or set())
            row[f"{m} final"] = f"{values[-1]:.4g}" if values else "-"
            row[f"{m} best"] = f"{best_value(values, direction):.4g}" if values else "-"
        row["kimg"] = f"{run.kimg:g}" if math.isfinite(run.kimg) else "-"
        row["wall_s"] = f"{run.wall_s:.1f}" if run.wall_s is not None else "-"
        row["status"] = run.status
        row["reason"] = run.reason
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no runs)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines.append("  ".join("-" * widths[c] for c in cols))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def plot_curves(runs: list[RunSummary], metrics: list[str], path: Path) -> None:
    """One panel per metric, one line per run against kimg (steps when kimg was not logged);
    a run that did not end ``ok`` is labelled with its status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [" ".join(o) or r.name for r, o in zip(runs, varying_overrides(runs))]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(7, 2.6 * len(metrics)), squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        for run, label in zip(runs, labels):
            series = run.history.series.get(metric, [])
            if not series:
                continue
            use_kimg = all(math.isfinite(k) for _, k, _ in series)
            xs = [k if use_kimg else s for s, k, _ in series]
            ys = [v for _, _, v in series]
            tag = "" if run.status == "ok" else f" [{run.status}]"
            ax.plot(xs, ys, marker="o", markersize=3, label=f"{run.name}: {label}{tag}")
        ax.set_title(metric)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
