"""One row per class: real examples of the class, then generated samples and their depth maps.

    python tools/class_grid.py CKPT --real data/cache/heldout64_n256_s1000_v1 --out grid.png

Left: ``--num-real`` images of the class from a synthetic split (so a reader can judge whether the
class is recognisable); then ``--seeds`` samples of the EMA generator (psi = ``--psi``) rendered
from frontal prior cameras (the camera generator applied, as the model samples), RGB then depth
(darker = nearer, the far plane white).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gp3d.data.truth import load_ground_truth
from gp3d.inference.portable import load_generator


def _u8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def class_grid(ckpt, real, seeds: int, num_real: int, res: int, psi: float) -> np.ndarray:
    G = load_generator(ckpt).G.eval()
    truth = load_ground_truth(real, novel_views=False)
    near, far = G.renderer.near, G.renderer.far
    gap = np.full((res, 4, 3), 255, np.uint8)
    rows = []
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(seeds, G.z_dim, generator=gen)
    for k in range(G.c_dim):
        idx = (truth.label == k).nonzero().flatten()[:num_real]
        reals = [
            _u8(F.interpolate(truth.image[i : i + 1], size=(res, res), mode="area")[0]) for i in idx
        ]
        c = F.one_hot(torch.full((seeds,), k), G.c_dim).float()
        torch.manual_seed(k)
        prior = G.camera_prior.sample(seeds, frontal=True)
        out = G(z, c, camera=prior, resolution=res, truncation_psi=psi, adapt_depth=False)
        rgb = [_u8(x) for x in out.rgb]
        d = ((out.depth - near) / (far - near) * 2 - 1).expand(-1, 3, -1, -1)
        depth = [_u8(x) for x in d]
        rows.append(np.concatenate([*reals, gap, *rgb, gap, *depth], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--real", required=True, help="a synthetic split (held-out) for real examples")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--num-real", type=int, default=2)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--psi", type=float, default=1.0)
    args = ap.parse_args(argv)
    grid = class_grid(args.checkpoint, args.real, args.seeds, args.num_real, args.res, args.psi)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out)
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
