"""Reading a run's Lightning ``CSVLogger`` file (``<run>/logs/metrics.csv``) and the best value of
a metric over the run: the sweep objective and the report's columns."""

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

KIMG = "progress/kimg"
METRICS_CSV = Path("logs") / "metrics.csv"  # conf/logger/csv.yaml: save_dir=<run>, name=logs


@dataclass
class MetricHistory:
    """Every logged value of every metric, each as ``(step, kimg, value)``; ``kimg`` is the
    progress logged at that step or the nearest step before it (NaN before the first)."""

    series: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.series)

    def values(self, name: str) -> list[float]:
        return [v for _, _, v in self.series.get(name, [])]

    def last_kimg(self) -> float:
        kimgs = [k for _, k, _ in self.series.get(KIMG, [])]
        return kimgs[-1] if kimgs else math.nan


def _float(text: str) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_metrics_csv(path: str | os.PathLike) -> MetricHistory:
    """Parse a CSVLogger file: one row per logging call, empty cells for metrics not logged then."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    kimg_at: dict[int, float] = {}
    for row in rows:
        step, kimg = _float(row.get("step", "")), _float(row.get(KIMG, ""))
        if step is not None and kimg is not None:
            kimg_at[int(step)] = kimg
    known = sorted(kimg_at)

    def kimg_of(step: int) -> float:
        before = [s for s in known if s <= step]
        return kimg_at[before[-1]] if before else math.nan

    history = MetricHistory()
    for row in rows:
        step_value = _float(row.get("step", ""))
        step = int(step_value) if step_value is not None else -1
        for name, text in row.items():
            value = _float(text or "")
            if name in ("step", "epoch") or value is None:
                continue
            history.series.setdefault(name, []).append((step, kimg_of(step), value))
    return history


def best_value(values: list[float], direction: str) -> float:
    """Best finite value (``direction``: ``minimize`` or ``maximize``); NaN when there is none."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction={direction!r}: use minimize or maximize")
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return min(finite) if direction == "minimize" else max(finite)


def diverged(history: MetricHistory, prefix: str = "train/") -> list[str]:
    """The training metrics whose last logged value is NaN or infinite."""
    return [
        name
        for name in history.names()
        if name.startswith(prefix)
        and history.values(name)
        and not math.isfinite(history.values(name)[-1])
    ]
