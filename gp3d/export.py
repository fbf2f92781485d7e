"""``python -m gp3d.export CHECKPOINT OUT.pt [--half]``: the portable generator file of a run.

The format and the loader live in ``gp3d/inference/portable.py`` (``gp3d.load_generator``).
"""

import argparse

import torch

from gp3d.inference.portable import export_generator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gp3d.export",
        description="Write the portable generator file (EMA weights + resolved config) of a "
        "gp3d training checkpoint; load it with gp3d.load_generator(path).",
    )
    parser.add_argument("checkpoint", help="training checkpoint, e.g. <run>/checkpoints/last.ckpt")
    parser.add_argument("out", help="output file, e.g. generator.pt")
    parser.add_argument("--half", action="store_true", help="store float16 weights (half size)")
    args = parser.parse_args(argv)
    path = export_generator(args.checkpoint, args.out, torch.float16 if args.half else None)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
