"""benchmark3d on the final checkpoint of every run of an ablation sweep: a Markdown table + JSON.

    python -m gp3d.train -m experiment=synthetic_fast \
        ablation=none,adaptor_p1,adaptor_p05,no_adaptor,rgb_only,no_class_head \
        model.total_kimg=10 hydra.sweep.dir=outputs/ablations
    python tools/ablation_table.py outputs/ablations [MORE_SWEEPS ...] [--run NAME[@SEED]=CKPT]
        [--reuse] [-- <gp3d.benchmark3d options, e.g. --num-invert 4 --w-steps 50 --g-steps 25>]

Each run is named by its sweep overrides (``.hydra/overrides.yaml``: ``ablation=`` and ``seed=``)
and scored on the newest ``checkpoints/kimg*.ckpt``; ``--run`` adds a checkpoint from elsewhere
(e.g. the same recipe's long run at the same kimg). Every run is scored with the same held-out
split, samples and evaluation seeds; runs of one ablation with several training seeds are one row
(mean ± half range). ``--reuse`` skips runs already scored from the same file with the same options.
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

from gp3d import benchmark3d
from gp3d.sweeps.record import read_run_json

# (section, key, column, better)
COLUMNS = [
    ("unconditional", "kid", "KID", "lower"),
    ("unconditional", "fid", "FID", "lower"),
    ("unconditional", "nfs", "NFS", "= data"),
    ("unconditional", "depth_w1", "depth W1", "lower"),
    ("classes", "class_accuracy", "class acc.", "higher"),
    ("reconstruction", "abs_rel", "PTI AbsRel", "lower"),
    ("reconstruction", "depth_corr", "PTI depth r", "higher"),
    ("reconstruction", "novel_psnr", "novel PSNR", "higher"),
]


def run_name_and_seed(run: Path) -> tuple[str, int]:
    """A sweep run's ablation name (its ``ablation=`` override, else the folder name) and seed
    (its ``seed=`` override, else the composed config's ``seed``)."""
    items = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    overrides = dict(o.split("=", 1) for o in items if "=" in o)
    name = overrides.get("ablation", run.name)
    if "seed" in overrides:
        return name, int(overrides["seed"])
    config = run / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(config.read_text()) if config.is_file() else {}
    return name, int((cfg or {}).get("seed", 0))


def sweep_runs(sweep: Path) -> list[tuple[str, int, Path]]:
    """(name, seed, newest kimg checkpoint) of every finished run folder under ``sweep``."""
    runs = []
    for overrides in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        run = overrides.parent.parent
        ckpts = sorted((run / "checkpoints").glob("kimg*.ckpt"))
        status = (read_run_json(run) or {}).get("status", "finished")  # older runs: no run.json
        if status != "finished":
            print(f"skipping {run}: run.json says {status!r}")
            continue
        if not ckpts:
            print(f"skipping {run}: no checkpoints/kimg*.ckpt (failed or unfinished)")
            continue
        runs.append((*run_name_and_seed(run), ckpts[-1]))
    return runs


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per ablation name (first-seen order): each column's mean over the seeds, its
    half range (max - min) / 2 and the per-seed values."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["name"], []).append(r)
    out = []
    for name, members in groups.items():
        cols = {}
        for section, key, column, _ in COLUMNS:
            vals = [(m["report"].get(section) or {}).get(key) for m in members]
            vals = [float(v) for v in vals if v is not None]
            if vals:
                mean = sum(vals) / len(vals)
                cols[column] = {"mean": mean, "half_range": (max(vals) - min(vals)) / 2,
                                "values": vals}  # fmt: skip
        out.append({"name": name, "seeds": [m["seed"] for m in members],
                    "kimg": members[0]["kimg"], "columns": cols})  # fmt: skip
    return out


def markdown(rows: list[dict]) -> str:
    """The aggregated table: ``mean ± half range`` where a run has several seeds."""
    groups = aggregate(rows)
    head = "| run | kimg | seeds | " + " | ".join(c for _, _, c, _ in COLUMNS) + " |"
    sep = "|---|---|---|" + "---|" * len(COLUMNS)
    first = rows[0]["report"] if rows else {}

    def hint(section, key, b):  # the held-out data's own value where the score has one
        ref = (first.get(section) or {}).get(f"{key}_true")
        return f"{b} ({ref:.3g})" if ref is not None else b

    better = "| (better) | | | " + " | ".join(hint(s, k, b) for s, k, _, b in COLUMNS) + " |"
    lines = [head, sep, better]
    for g in groups:
        cells = []
        for _, _, column, _ in COLUMNS:
            c = g["columns"].get(column)
            if c is None:
                cells.append("")
            elif len(c["values"]) > 1:
                cells.append(f"{c['mean']:.4g} ± {c['half_range']:.2g}")
            else:
                cells.append(f"{c['mean']:.4g}")
        seeds = ",".join(str(s) for s in g["seeds"])
        lines.append(f"| {g['name']} | {g['kimg']:g} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stamp(ckpt: Path, options: list[str]) -> dict:
    st = ckpt.stat()
    return {"checkpoint": str(ckpt.resolve()), "size": st.st_size, "mtime": st.st_mtime,
            "options": options}  # fmt: skip


def score(ckpt: Path, out: Path, options: list[str], reuse: bool) -> dict | None:
    """benchmark3d's report for ``ckpt`` in ``out``; with ``reuse``, an earlier report of the same
    checkpoint file and options is read instead of recomputed."""
    stamp_file, report_file = out / "ablation_args.json", out / "benchmark3d.json"
    stamp = _stamp(ckpt, options)
    fresh = reuse and report_file.is_file() and stamp_file.is_file()
    if fresh and json.loads(stamp_file.read_text()) == stamp:
        return json.loads(report_file.read_text())
    if benchmark3d.main([str(ckpt), "--out", str(out), "--no-progress", *options]) != 0:
        return None
    stamp_file.write_text(json.dumps(stamp, indent=2))
    return json.loads(report_file.read_text())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweeps", type=Path, nargs="+", help="Hydra multirun folders (one per seed "
                    "or per batch of ablations); the table goes to the first")  # fmt: skip
    ap.add_argument("--run", action="append", default=[],
                    help="NAME[@SEED]=CKPT, scored as well (seed 0 unless given)")  # fmt: skip
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a run's earlier report of the same checkpoint and options")  # fmt: skip
    args = ap.parse_args(argv)
    runs = [(*r, sweep) for sweep in args.sweeps for r in sweep_runs(sweep)]
    for spec in reversed(args.run):
        label, _, ckpt = spec.partition("=")
        name, _, seed = label.partition("@")
        if not Path(ckpt).is_file():
            print(f"error: --run {spec}: no such checkpoint", file=sys.stderr)
            return 2
        runs.insert(0, (name, int(seed or 0), Path(ckpt), args.sweeps[0]))
    if not runs:
        print(f"error: no finished runs under {' '.join(map(str, args.sweeps))}", file=sys.stderr)
        return 2
    rows = []
    for name, seed, ckpt, sweep in runs:
        out = sweep / "ablation_table" / (name if seed == 0 else f"{name}@{seed}")
        report = score(ckpt, out, extra, args.reuse)
        if report is None:
            return 2
        rows.append({"name": name, "seed": seed, "checkpoint": str(ckpt),
                     "kimg": report.get("kimg") or 0, "report": report})  # fmt: skip
    target = args.sweeps[0]
    summary = {"runs": rows, "aggregate": aggregate(rows)}
    (target / "ablation_table.json").write_text(json.dumps(summary, indent=2, default=str))
    table = markdown(rows)
    (target / "ablation_table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
