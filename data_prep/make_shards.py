"""The whole real-data chain (spec 9) in one resumable command; ``make shards`` calls it.

    python -m data_prep.make_shards /data/imagenet --out data/imagenet_256 --resolution 256 \\
        --select-ratio 0.5 --depth depth-anything/Depth-Anything-V2-Small-hf \\
        --teacher-weights /models/resnet50.pth --workers 32

Steps (each one resumable on its own, so re-running the same command after an interruption
continues where it stopped and a finished chain is a quick no-op):

1. ``select_instances`` (only with ``--select-ratio`` / ``--select-num``) -> ``<work>/selection.txt``
2. depth: ``--depth beside`` (default) uses the maps next to the images (or under
   ``--depth-dir``) as the original releases ship them; ``--depth import`` validates and converts
   them (``--depth-kind disparity`` inverts) into ``<work>/depth``; ``--depth leres`` runs the
   original's LeReS ResNeXt-101 (``--depth-weights res101.pth``, else a hub download); anything
   else is a transformers depth model (hub id, local folder, ``random:<preset>``). Models write
   into ``<work>/depth``. Only selected images get depth.
3. ``write_shards`` -> ``DEST`` (resize + centre crop, manifest, skip list)
4. ``extract_features`` in place (``--teacher none`` skips it)
5. ``validate`` (``--full`` decodes every sample)

``<work>`` defaults to ``DEST.work`` beside ``DEST``; it can be deleted once DEST is done.
"""

import argparse
import os
import sys
from pathlib import Path

from data_prep import estimate_depth, extract_features, select_instances, validate
from data_prep import write_shards as ws
from data_prep.depth.convert import DEFAULT_MAX_RATIO, DEPTH, PREDICTION_KINDS
from data_prep.features.teacher import PRETRAINED

BESIDE, IMPORT = "beside", "import"


def _step(title: str, quiet: bool) -> None:
    if not quiet:
        print(f"\n== {title}", file=sys.stderr, flush=True)


def make_shards(args: argparse.Namespace) -> int:
    """Run the chain for parsed arguments (see :func:`build_parser`); exit status."""
    dest = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else dest.with_name(dest.name + ".work")
    common_flags = ["--workers", str(args.workers)] + ["--quiet"] * args.quiet
    src_flags = ["--class-map", args.class_map] * bool(args.class_map)
    src_flags += ["--no-train-subdir"] * args.no_train_subdir
    select = None
    if args.select_ratio is not None or args.select_num is not None:
        _step("1/5 instance selection", args.quiet)
        select = work / "selection.txt"
        keep = (["--keep-ratio", str(args.select_ratio)] if args.select_ratio is not None
                else ["--num-keep", str(args.select_num)])  # fmt: skip
        argv = [args.src, "--out", str(select), *keep, "--feature-net", args.feature_net,
                "--device", args.device, *src_flags, *common_flags]  # fmt: skip
        if select_instances.main(argv):
            return 1
    sel_flags = ["--select", str(select)] if select else []

    depth_dir = args.depth_dir
    if args.depth != BESIDE:
        _step(f"2/5 depth ({args.depth})", args.quiet)
        depth_dir = str(work / "depth")
        argv = [args.src, "--out", depth_dir, *sel_flags, *src_flags, *common_flags]
        argv += ["--max-ratio", str(args.max_ratio)] * (args.max_ratio is not None)
        if args.depth == IMPORT:
            argv += ["--import-from", args.depth_dir or args.src, "--kind", args.depth_kind]
        else:
            argv += ["--model", args.depth, "--batch-size", str(args.depth_batch_size),
                     "--device", args.device, "--dtype", args.depth_dtype]  # fmt: skip
            argv += ["--depth-weights", args.depth_weights] * bool(args.depth_weights)
        if args.overwrite:
            argv.append("--overwrite")
        if estimate_depth.main(argv):
            return 1

    _step("3/5 write_shards", args.quiet)
    argv = [args.src, "--out", str(dest), "--resolution", str(args.resolution), "--shard-size",
            str(args.shard_size), "--format", args.format, *sel_flags, *src_flags,
            *common_flags]  # fmt: skip
    argv += ["--depth-dir", depth_dir] if depth_dir else []
    argv += ["--overwrite"] * args.overwrite
    if ws.main(argv):
        return 1

    if args.teacher != "none":
        _step(f"4/5 teacher features ({args.teacher})", args.quiet)
        weights = {PRETRAINED: ["--pretrained"], "random": ["--random-init"]}.get(
            args.teacher_weights, ["--weights", args.teacher_weights]
        )
        argv = [str(dest), "--model", args.teacher, *weights, "--device", args.device,
                "--batch-size", str(args.teacher_batch_size),
                "--workers", str(min(args.workers, 8))]  # fmt: skip
        argv += ["--input-size", str(args.teacher_input_size)] * bool(args.teacher_input_size)
        if extract_features.main(argv):
            return 1

    _step("5/5 validate", args.quiet)
    return validate.main([str(dest), "--workers", str(args.workers)] + ["--full"] * args.full)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.make_shards",
        description="Image folder (ImageNet class folders or an SDIP/LSUN release) -> validated "
        "gp3d shards: [instance selection] -> depth -> write_shards -> teacher features -> "
        "validate. Resumable: re-run the same command after an interruption.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", help="image folder (train/ used when present)")
    p.add_argument("--out", required=True, help="shard folder to create (DEST)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--work-dir", help="intermediate files (default: DEST.work)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CPU processes")
    p.add_argument("--device", default="auto", help="networks: auto = cuda if available")
    p.add_argument("--select-ratio", type=float, help="instance selection: keep this fraction")
    p.add_argument("--select-num", type=int, help="instance selection: keep N per class")
    p.add_argument("--feature-net", default="inception", help="selection features (feature_net)")
    p.add_argument("--depth", default=BESIDE, help="beside | import | leres (the original's "
                   "LeReS) | <hub id or model folder> | random:<preset> (tests)")  # fmt: skip
    p.add_argument("--depth-weights", metavar="PATH",
                   help="--depth leres: local res101.pth (default: hub download)")  # fmt: skip
    p.add_argument("--depth-dir", help="precomputed maps (default: beside the images)")
    p.add_argument("--depth-kind", choices=PREDICTION_KINDS, default=DEPTH,
                   help="what imported maps hold")  # fmt: skip
    p.add_argument(
        "--max-ratio",
        type=float,
        help=f"far/near range kept (default {DEFAULT_MAX_RATIO:g}; LeReS: inf)",
    )
    p.add_argument("--depth-batch-size", type=int, default=16)
    p.add_argument("--depth-dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--teacher", default="resnet50", help="timm model, or none to skip features")
    p.add_argument("--teacher-weights", default=PRETRAINED,
                   help="pretrained (download) | random (tests) | local weights file")  # fmt: skip
    p.add_argument("--teacher-input-size", type=int, help="default: the model's (224)")
    p.add_argument("--teacher-batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=ws.DEFAULT_SHARD_SIZE)
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="image encoding")
    p.add_argument("--class-map", help="class mapping file (default: sorted folder names)")
    p.add_argument("--no-train-subdir", action="store_true", help="ignore SRC/train/")
    p.add_argument("--full", action="store_true", help="validate by decoding every sample")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of other params")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.select_ratio is not None and args.select_num is not None:
        print("error: give --select-ratio or --select-num, not both", file=sys.stderr)
        return 2
    return make_shards(args)


if __name__ == "__main__":
    sys.exit(main())
