"""Model-state memory per device under DDP and FSDP, from an experiment's instantiated G and D.

    python -m gp3d.bench.memory --experiment 3dgp_imagenet --devices 8 --num-classes 1000

Counts fp32 weights, gradients and Adam's two moments of G and D, plus the EMA copy of G.
Under ``trainer=ddp`` every device holds all of it; under ``trainer=fsdp`` (gp3d.training.fsdp)
weights, gradients and Adam states are split over the devices, the EMA copy stays a full
replica, and a unit (one network block) is gathered while it computes: its weights and
gradients come on top, transiently. Activations are not counted: they depend on the batch
and are the same under both strategies.
"""

import argparse

import torch
from hydra.utils import instantiate

from gp3d.bench.train_step import bench_config
from gp3d.models.param_count import count_parameters, format_parameter_table, parameter_counts
from gp3d.training.fsdp import units_of

FP32 = 4  # bytes
GIB = 2**30


def model_state_bytes(trained: int, ema: int, devices: int, sharded: bool) -> dict[str, float]:
    """Bytes per device: weights, gradients and Adam moments (2 per weight) of ``trained``
    parameters, split over ``devices`` when ``sharded``, plus a replicated fp32 EMA of ``ema``."""
    share = trained / devices if sharded else trained
    out = {
        "weights": FP32 * share,
        "gradients": FP32 * share,
        "adam": 2 * FP32 * share,
        "ema": FP32 * ema,
    }
    out["total"] = sum(out.values())
    return out


def largest_unit(G: torch.nn.Module, D: torch.nn.Module) -> int:
    """Parameters of the biggest FSDP unit (what one all-gather materialises), as
    ``fsdp.shard_networks`` cuts the networks: a unit's own parameters, its inner units' excluded."""
    sizes = []
    for net in [*[m for m in G.children()], D]:
        units = units_of(net)
        inner = sum(count_parameters(u) for u in units[:-1])
        sizes += [count_parameters(u) for u in units[:-1]] + [count_parameters(net) - inner]
    return max(sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="3dgp_imagenet")
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--num-classes", type=int, default=1000)
    args = ap.parse_args()
    cfg = bench_config(args.experiment, "full", 64, args.num_classes)
    G = instantiate(cfg.model.module.generator, _convert_="all")  # ~1 GB at ImageNet sizes
    D = instantiate(cfg.model.module.discriminator, _convert_="all")
    counts = parameter_counts(G, D)
    print(format_parameter_table(counts))
    trained, ema = counts["G total"] + counts["D"], counts["G total"]
    unit = largest_unit(G, D)
    print(f"\nmodel state per device, GiB (fp32 weights, gradients, Adam 2x, EMA of G), "
          f"{args.devices} devices:")  # fmt: skip
    for name, sharded in (("ddp", False), ("fsdp", True)):
        b = model_state_bytes(trained, ema, args.devices, sharded)
        row = "  ".join(f"{k} {v / GIB:.2f}" for k, v in b.items())
        print(f"{name:<5} {row}")
    print(f"fsdp  + transient gathered unit (weights + gradients): {2 * FP32 * unit / GIB:.2f} "
          f"({unit:,} parameters, the largest unit)")  # fmt: skip


if __name__ == "__main__":
    main()
