"""The number a sweeper optimises: the best value of ``optimized_metric`` over the run (as
lightning-hydra-template's ``optimized_metric``), NaN when the run diverged or never logged it."""

import math
from pathlib import Path

from gp3d.sweeps.metrics_csv import best_value, read_metrics_csv


def csv_metrics_file(loggers: list) -> Path | None:
    """The metrics.csv written by a Lightning CSVLogger among ``loggers``, if any."""
    for lg in loggers:
        if type(lg).__name__ == "CSVLogger":
            path = Path(lg.log_dir) / "metrics.csv"
            if path.is_file():
                return path
    return None


def run_objective(
    key: str | None, direction: str, loggers: list, callback_metrics: dict[str, float]
) -> float:
    """Best logged value of ``key`` (from the CSV history; else the last value Lightning holds).

    Raises ValueError naming the metrics that were logged when ``key`` never was, so a typo in
    ``optimized_metric`` fails loudly instead of steering a search with NaNs.
    """
    if not key:
        return math.nan
    history = read_metrics_csv(path) if (path := csv_metrics_file(loggers)) else None
    values = history.values(key) if history else []
    if not values and key in callback_metrics:
        values = [float(callback_metrics[key])]
    if not values:
        logged = sorted(set(callback_metrics) | set(history.names() if history else []))
        raise ValueError(
            f"optimized_metric={key} was never logged by this run; logged: {', '.join(logged)}. "
            "Set optimized_metric to one of them (e.g. the FID callback's val/fid<N>)"
        )
    if not math.isfinite(values[-1]):
        return math.nan  # diverged at the end: a rolled-back best value is not this run's result
    return best_value(values, direction)
