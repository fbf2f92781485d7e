"""Depth maps for an image folder (or tars) on many GPUs / nodes: Lightning ``Trainer.predict``.

    torchrun --nproc_per_node 8 -m data_prep.predict_depth /data/imagenet --out data/depth \\
        --model depth-anything/Depth-Anything-V2-Small-hf --batch-size 64 --precision bf16-mixed
    srun --ntasks-per-node 8 python -m data_prep.predict_depth ...   # SLURM, as training
    python -m data_prep.predict_depth SRC --out DEPTH --model M       # one process

Same output as ``python -m data_prep.estimate_depth --model`` (``<stem>_depth.png`` mirroring SRC,
``depth_info.json``, ``depth_skipped.txt``; the same parameters, so either command resumes the
other's fp32 maps) and the same images (class folders, flat, tars; ``--select``). The work split,
the per-rank writer and the resume rule are in ``data_prep/depth/predict.py``: the maps do not
depend on the number of processes. Why Lightning: training already launches through it
(torchrun / SLURM detection, DDP set-up, devices, precision), so depth runs wherever training does
without another engine to install or configure.
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L

from data_prep import common
from data_prep.depth.convert import (
    DEFAULT_MAX_RATIO,
    PREDICTION_KINDS,
    default_max_ratio,
    max_ratio_record,
)
from data_prep.depth.leres import add_leres_arguments
from data_prep.depth.model import DepthModel
from data_prep.depth.output import (
    SKIPPED_NAME,
    finish_depth_out,
    model_params,
    prepare_depth_out,
)
from data_prep.depth.predict import (
    PRECISIONS,
    WORK_DIR,
    DepthPredictor,
    MapWriter,
    launch_world,
    read_rank_records,
)
from data_prep.folder_source import depth_relpath
from data_prep.shards.assignment import select_records
from data_prep.sources import scan_source


def predict_depth(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str,
    prediction: str = "auto",
    max_ratio: float | None = None,
    select: str | os.PathLike | None = None,
    class_map: str | os.PathLike | None = None,
    train_subdir: bool = True,
    batch_size: int = 16,
    workers: int = 0,
    precision: str = "32-true",
    accelerator: str = "auto",
    devices: int | None = None,
    num_nodes: int | None = None,
    seed: int = 0,
    depth_weights: str | None = None,
    input_size: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write the maps (see the module docstring); returns rank 0's summary (other ranks: {}).
    ``devices`` / ``num_nodes``: default from the torchrun / SLURM environment (else 1 / 1).
    ``max_ratio`` None: no floor for LeReS, else 10; ``depth_weights`` / ``input_size``: LeReS's
    ``res101.pth`` and input side (as ``estimate_depth``)."""
    max_ratio = default_max_ratio(model) if max_ratio is None else max_ratio
    if precision not in PRECISIONS or batch_size < 1 or workers < 0 or max_ratio <= 1:
        raise ValueError(f"need precision in {PRECISIONS}, batch_size >= 1, workers >= 0, "
                         "max_ratio > 1")  # fmt: skip
    t0 = time.perf_counter()
    index = scan_source(src, class_map, train_subdir, label_key="none")
    records, not_found = select_records(index, select)
    relpaths = [r.relpath for r in records]
    out = Path(out)
    estimator = DepthModel(model, prediction, seed, weights=depth_weights, input_size=input_size)
    estimator.fetch_weights()  # a missing LeReS file fails before anything is written
    params = model_params(estimator, prediction, max_ratio)
    params.update({"precision": precision} if precision != "32-true" else {})
    prepare_depth_out(out, index.root, params, overwrite)  # every rank, before the rendezvous
    estimator.load("cpu")  # Lightning moves the network to the rank's device
    local, nodes = launch_world()
    devices, num_nodes = devices or local, num_nodes or nodes
    writer = MapWriter(out, estimator.prediction or prediction, max_ratio, len(relpaths), progress)
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, precision=precision,
        strategy="ddp" if devices * num_nodes > 1 else "auto", use_distributed_sampler=False,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[writer], default_root_dir=out / WORK_DIR,
    )  # fmt: skip
    module = DepthPredictor(estimator, index.root, relpaths, out, batch_size, workers)
    with warnings.catch_warnings():  # each item is a whole batch: there are no batch indices
        warnings.filterwarnings("ignore", "Couldn't infer the batch indices")
        trainer.predict(module, return_predictions=False)
    trainer.strategy.barrier()  # every rank's maps and skip record are on disk
    if trainer.global_rank != 0:
        return {}
    ranks = read_rank_records(out, trainer.world_size)
    skips = [tuple(s) for r in ranks for s in r["skips"]]
    skips += [(rel, reason, "") for rel, reason in not_found]
    num_maps = sum((out / depth_relpath(rel)).is_file() for rel in relpaths)
    info = {"estimator": {**estimator.record(), "max_ratio": max_ratio_record(max_ratio),
                          "precision": precision},
            "source": {"root": str(index.root.resolve()), "selection": select and str(select)},
            "engine": {"name": "lightning Trainer.predict", "world_size": trainer.world_size}}  # fmt: skip
    skipped = finish_depth_out(out, info, len(records), num_maps, skips)  # type: ignore[arg-type]
    written = sum(r["written"] for r in ranks)
    seconds = time.perf_counter() - t0
    return {"written": written, "maps": num_maps, "skipped": skipped, "seconds": seconds,
            "world_size": trainer.world_size}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.predict_depth",
        description="Depth maps with a transformers depth model on many devices (Lightning "
        "Trainer.predict; launch with torchrun or srun). Resumable: re-run the same command.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", help="image folder (class folders / flat) or folder of tars")
    parser.add_argument("--out", required=True, help="depth folder (mirrors SRC's tree)")
    parser.add_argument("--model", required=True, help="hub id, local model folder, leres "
                        "(LeReS ResNeXt-101), or random:<depth-anything-tiny|dpt-tiny|leres> "
                        "(tests)")  # fmt: skip
    parser.add_argument("--prediction", choices=("auto", *PREDICTION_KINDS), default="auto")
    parser.add_argument(
        "--max-ratio",
        type=float,
        help=f"far/near range kept (default {DEFAULT_MAX_RATIO:g}; LeReS: inf)",
    )
    add_leres_arguments(parser)
    parser.add_argument("--select", help="only the relative paths listed in this file")
    parser.add_argument("--class-map", help="class mapping file (as write_shards)")
    parser.add_argument("--no-train-subdir", action="store_true", help="ignore SRC/train/")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (per rank)")
    parser.add_argument("--workers", type=int, default=4, help="decoding processes per rank")
    parser.add_argument("--precision", choices=PRECISIONS, default="32-true",
                        help="bf16-mixed: autocast on GPUs that support it")  # fmt: skip
    parser.add_argument("--accelerator", default="auto", help="auto | gpu | cpu")
    parser.add_argument("--devices", type=int, help="processes per node (default: torchrun/SLURM)")
    parser.add_argument("--num-nodes", type=int, help="nodes (default: torchrun/SLURM)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random: models")
    parser.add_argument("--overwrite", action="store_true", help="replace maps of other params")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        res = predict_depth(
            args.src, args.out, model=args.model, prediction=args.prediction,
            max_ratio=args.max_ratio, select=args.select, class_map=args.class_map,
            train_subdir=not args.no_train_subdir, batch_size=args.batch_size,
            workers=args.workers, precision=args.precision, accelerator=args.accelerator,
            devices=args.devices, num_nodes=args.num_nodes, seed=args.seed,
            depth_weights=args.depth_weights, input_size=args.input_size, overwrite=args.overwrite, progress=not args.quiet,
        )  # fmt: skip
    except (common.DatasetError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if res:
        print(
            f"{args.out}: {res['written']} maps written by {res['world_size']} process(es), "
            f"{res['maps']} in all, in {res['seconds']:.1f} s; skipped {res['skipped'] or 'none'} "
            f"(see {SKIPPED_NAME})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
