"""benchmark3d on the final checkpoint of every run of an ablation sweep: a Markdown table + JSON.

    python -m gp3d.train -m experiment=synthetic_fast \
        ablation=none,adaptor_p1,adaptor_p05,no_adaptor,rgb_only,no_class_head \
        model.total_kimg=10 hydra.sweep.dir=outputs/ablations
    python tools/ablation_table.py outputs/ablations [--run NAME=CKPT ...] \
        [-- <gp3d.benchmark3d options, e.g. --num-invert 4 --w-steps 50 --g-steps 25>]

Each run is named by its sweep overrides (``.hydra/overrides.yaml``) and scored on the newest
``checkpoints/kimg*.ckpt``; ``--run`` adds a checkpoint from elsewhere (e.g. the same recipe's
long run at the same kimg). Every run is scored with the same held-out split, samples and seeds.
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

from gp3d import benchmark3d

# (section, key, column, better)
COLUMNS = [
    ("unconditional", "kid", "KID", "lower"),
    ("unconditional", "fid", "FID", "lower"),
    ("unconditional", "nfs", "NFS", "= data"),
    ("unconditional", "depth_w1", "depth W1", "lower"),
    ("classes", "class_accuracy", "class acc.", "higher"),
    ("reconstruction", "abs_rel", "PTI AbsRel", "lower"),
    ("reconstruction", "novel_psnr", "novel PSNR", "higher"),
]


def sweep_runs(sweep: Path) -> list[tuple[str, Path]]:
    """(name, newest kimg checkpoint) of every finished run folder under ``sweep``."""
    runs = []
    for overrides in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        run = overrides.parent.parent
        ckpts = sorted((run / "checkpoints").glob("kimg*.ckpt"))
        if not ckpts:
            print(f"skipping {run}: no checkpoints/kimg*.ckpt (failed or unfinished)")
            continue
        items = yaml.safe_load(overrides.read_text()) or []
        name = ",".join(o.split("=", 1)[1] for o in items if o.startswith("ablation=")) or run.name
        runs.append((name, ckpts[-1]))
    return runs


def markdown(rows: list[dict]) -> str:
    head = "| run | kimg | " + " | ".join(c for _, _, c, _ in COLUMNS) + " |"
    sep = "|---|---|" + "---|" * len(COLUMNS)
    first = rows[0]["report"] if rows else {}

    def hint(section, key, b):  # the held-out data's own value where the score has one
        ref = (first.get(section) or {}).get(f"{key}_true")
        return f"{b} ({ref:.3g})" if ref is not None else b

    better = "| (better) | | " + " | ".join(hint(s, k, b) for s, k, _, b in COLUMNS) + " |"
    lines = [head, sep, better]
    for r in rows:
        cells = []
        for section, key, _, _ in COLUMNS:
            v = (r["report"].get(section) or {}).get(key)
            cells.append("" if v is None else f"{v:.4g}")
        lines.append(f"| {r['name']} | {r['kimg']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweep", type=Path, help="Hydra multirun folder (hydra.sweep.dir)")
    ap.add_argument("--run", action="append", default=[], help="NAME=CKPT, scored as well")
    args = ap.parse_args(argv)
    runs = sweep_runs(args.sweep)
    for spec in args.run:
        name, _, ckpt = spec.partition("=")
        if not Path(ckpt).is_file():
            print(f"error: --run {spec}: no such checkpoint", file=sys.stderr)
            return 2
        runs.insert(0, (name, Path(ckpt)))
    if not runs:
        print(f"error: no finished runs under {args.sweep}", file=sys.stderr)
        return 2
    rows = []
    for name, ckpt in runs:
        out = args.sweep / "ablation_table" / name
        if benchmark3d.main([str(ckpt), "--out", str(out), "--no-progress", *extra]) != 0:
            return 2
        report = json.loads((out / "benchmark3d.json").read_text())
        rows.append({"name": name, "checkpoint": str(ckpt), "kimg": report.get("kimg") or 0,
                     "report": report})  # fmt: skip
    (args.sweep / "ablation_table.json").write_text(json.dumps(rows, indent=2, default=str))
    table = markdown(rows)
    (args.sweep / "ablation_table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
