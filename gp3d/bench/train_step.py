"""Speed benchmark: seconds per training iteration (G + D + amortised R1) of several experiments,
measured in one process on the same in-memory batch, reported as ratios to a baseline.

    python -m gp3d.bench                                   # synthetic sizes, 3dgp vs epigraf
    python -m gp3d.bench --experiments epigraf 3dgp no_kd --steps 20 --size synthetic
    python -m gp3d.bench --size full --device cuda         # the original's sizes (GPU)
    python -m gp3d.bench --experiments 3dgp 3dgp,model.module.compile=true --warmup 3

Absolute times only hold on the machine they were measured on; compare ratios.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning import Callback, Trainer
from omegaconf import open_dict
from torch.utils.data import DataLoader, Dataset

from gp3d.types import Batch

CONF = str(Path(__file__).resolve().parents[2] / "conf")
SIZES = ("synthetic", "full")  # synthetic = the `make train` sizes; full = the original's
SYNTHETIC_SIZES = [
    "model.z_dim=64",
    "model.w_dim=64",
    "model.patch_resolution=32",
    "model.synthesis.plane_resolution=64",
    "model.synthesis.plane_channels=16",
    "model.synthesis.channel_base=2048",
    "model.synthesis.channel_max=64",
    "model.decoder.hidden_dim=32",
    "model.renderer.num_coarse=12",
    "model.renderer.num_fine=12",
    "model.discriminator.channel_base=2048",
    "model.discriminator.channel_max=128",
    "data.resolution=64",
]


class _Fixed(Dataset):
    def __init__(self, batch: Batch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Batch:
        return self.batch


class _Timer(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._t = warmup, [], 0.0

    def on_train_batch_start(self, trainer, *args) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._t)


def build(exp: str, size: str, batch_size: int, num_classes: int, extra: list[str] | None = None):
    overrides = [f"experiment={exp}"] + (SYNTHETIC_SIZES if size == "synthetic" else [])
    overrides += list(extra or [])  # e.g. data.resolution=256 (gp3d.bench.fid)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides + [f"data.batch_size={batch_size}"])
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/gp3d_bench"
        cfg.model.c_dim = num_classes
        if cfg.model.kd_dim == "auto":  # ResNet-50 features when the experiment distils
            cfg.model.kd_dim = 2048 if cfg.data.use_embeddings else 0
    return instantiate(cfg.model.module, _convert_="all"), cfg


def bench(
    exp: str,
    size: str,
    steps: int,
    warmup: int,
    batch_size: int,
    device: str,
    num_classes: int,
    extra: list[str] | None = None,
) -> float:
    model, cfg = build(exp, size, batch_size, num_classes, extra)
    res = cfg.data.resolution
    kd = cfg.model.kd_dim
    batch = Batch(
        image=torch.rand(batch_size, 3, res, res) * 2 - 1,
        depth=torch.rand(batch_size, 1, res, res) * 2 - 1,
        label=torch.randint(0, max(num_classes, 1), (batch_size,)),
        embedding=torch.randn(batch_size, kd) if kd > 0 else None,
    )
    loader = DataLoader(_Fixed(batch, steps + warmup), batch_size=None)
    timer = _Timer(warmup)
    trainer = Trainer(
        accelerator=device,
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    return sum(timer.times) / len(timer.times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--experiments",
        nargs="+",
        default=["epigraf", "3dgp"],
        help="first one is the baseline; EXP,override,... adds Hydra overrides to one entry "
        "(e.g. 3dgp,model.module.compile=true)",
    )
    ap.add_argument("--size", choices=SIZES, default="synthetic")
    ap.add_argument(
        "--steps", type=int, default=16, help="timed iterations (a multiple of r1_interval is fair)"
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args()
    results = {}
    for entry in args.experiments:  # "3dgp" or "3dgp,model.module.compile=true,..."
        exp, *extra = entry.split(",")
        results[entry] = bench(
            exp, args.size, args.steps, args.warmup, args.batch_size, args.device,
            args.num_classes, extra,
        )  # fmt: skip
    base = results[args.experiments[0]]
    print(
        f"{'experiment':<48}{'s/iter':>10}{'ratio':>8}   (size={args.size}, batch={args.batch_size}, {args.device})"
    )
    for exp, t in results.items():
        print(f"{exp:<48}{t:>10.3f}{t / base:>8.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results_s_per_iter": results, "args": vars(args)}, indent=2)
        )


if __name__ == "__main__":
    main()
