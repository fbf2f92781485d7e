"""Teacher features (``emb.npy``) for a shard folder on many GPUs / nodes: Lightning ``Trainer.predict``.

    torchrun --nproc_per_node 8 -m data_prep.predict_features data/in256 --out data/in256_emb \\
        --weights resnet50.pth --batch-size 256 --precision bf16-mixed
    srun --ntasks-per-node 8 python -m data_prep.predict_features ...   # SLURM, as training

The same output as ``python -m data_prep.extract_features`` (shards + manifest, resumable from
either, in place or into ``--out``); the work split and the per-rank writer are in
``data_prep/features/predict.py``: the shards do not depend on the number of processes.
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from data_prep import common
from data_prep.depth.predict import PRECISIONS, launch_world
from data_prep.extract_features import add_teacher_arguments, finish_features, prepare_run
from data_prep.features.predict import FeaturePredictor, ShardWriter
from data_prep.features.teacher import PRETRAINED, RANDOM, Teacher


def predict_features(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    model_name: str = "resnet50",
    weights: str | os.PathLike = PRETRAINED,
    input_size: int | None = None,
    batch_size: int = 64,
    dtype: str = "float32",
    precision: str = "32-true",
    accelerator: str = "auto",
    devices: int | None = None,
    num_nodes: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Add the features (see the module docstring); returns rank 0's summary (others: {})."""
    if precision not in PRECISIONS or batch_size < 1:
        raise ValueError(f"need precision in {PRECISIONS} and batch_size >= 1")
    t0, src = time.perf_counter(), Path(src)
    teacher = Teacher(model_name, weights, input_size, seed=seed, dtype=dtype)
    if precision != "32-true":  # bf16 features differ: a resume must not mix them with fp32 ones
        teacher.record["precision"] = precision
    run = prepare_run(src, dst, teacher, overwrite)  # every rank, before the rendezvous
    entries = run.manifest["shards"]
    if run.finished:
        return {"written": 0, "shards": len(entries), "seconds": 0.0, "world_size": 0}
    teacher.load("cpu")  # Lightning moves the network to the rank's device
    local, nodes = launch_world()
    devices, num_nodes = devices or local, num_nodes or nodes
    writer = ShardWriter(run.work, run.manifest["num_samples"], progress)
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, precision=precision,
        strategy="ddp" if devices * num_nodes > 1 else "auto", use_distributed_sampler=False,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[writer], default_root_dir=run.work,
    )  # fmt: skip
    module = FeaturePredictor(teacher, src, run.work, entries, batch_size)
    with warnings.catch_warnings():  # each item is a whole shard: there are no batch indices
        warnings.filterwarnings("ignore", "Couldn't infer the batch indices")
        trainer.predict(module, return_predictions=False)
    # every rank's shards are on disk once all have reached this collective
    count = torch.tensor(float(writer.written), dtype=torch.float64, device=module.device)
    written = int(trainer.strategy.reduce(count, reduce_op="sum"))
    if trainer.global_rank != 0:
        return {}
    shards = []
    for e in entries:
        path = run.work / e["name"]
        shards.append({**e, "bytes": path.stat().st_size, "sha256": common.file_sha256(path)})
    finish_features(src, run.out, run.work, run.manifest, shards, teacher, run.source)
    return {"written": written, "shards": len(entries), "world_size": trainer.world_size,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.predict_features",
        description="Teacher features (emb.npy) on many devices (Lightning Trainer.predict; "
        "launch with torchrun or srun). Resumable: re-run the same command.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_teacher_arguments(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="32-true")
    parser.add_argument("--accelerator", default="auto", help="auto | gpu | cpu")
    parser.add_argument("--devices", type=int, help="processes per node (default: torchrun/SLURM)")
    parser.add_argument("--num-nodes", type=int, help="nodes (default: torchrun/SLURM)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    chosen = args.weights or (PRETRAINED if args.pretrained else RANDOM)
    try:
        res = predict_features(
            args.src, args.out, model_name=args.model, weights=chosen, input_size=args.input_size,
            batch_size=args.batch_size, dtype=args.dtype, precision=args.precision,
            accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
            seed=args.seed, overwrite=args.overwrite, progress=not args.quiet,
        )  # fmt: skip
    except (common.DatasetError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if res:
        print(f"{args.out or args.src}: features of {res['written']} images written by "
              f"{res['world_size']} process(es) in {res['seconds']:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
