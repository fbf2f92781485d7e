"""The benchmark's picture: one column per reconstructed sample, six labelled rows."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gp3d.data.truth import GroundTruth
from gp3d.utils.media import colorize_depth, save_array, tile, to_uint8

ROWS = ("input", "reconstruction", "novel view", "true novel view", "rendered depth", "true depth")
LABEL_WIDTH = 120


def _label(text: str, height: int) -> np.ndarray:
    img = Image.new("RGB", (LABEL_WIDTH, height), (0, 0, 0))
    ImageDraw.Draw(img).text((4, height // 2 - 5), text, fill=(255, 255, 255))
    return np.asarray(img)


def _upscale(cell: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(cell).resize((size, size), Image.NEAREST))


def panel_rows(recon, truth: GroundTruth) -> list[list[torch.Tensor]]:
    """The six rows (``ROWS``) as lists of [3, H, W] images in [-1, 1]; depth as turbo colours
    over [near, far] (near = blue), the same scale for rendered and true depth."""

    def depth_img(d: torch.Tensor) -> torch.Tensor:
        return colorize_depth(d, truth.near, truth.far)[0]

    idx = recon.index
    return [
        [truth.image[i] for i in idx],
        [r[0] for r in recon.rgb],
        [r[0] for r in recon.novel_rgb],
        [truth.novel_image[i, 0] for i in idx],
        [depth_img(d) for d in recon.depth],
        [depth_img(truth.depth[i : i + 1]) for i in idx],
    ]


def save_panel(recon, truth: GroundTruth, path: str | Path, cell: int = 128) -> Path:
    """Write the panel PNG (cells upscaled to ``cell`` pixels, nearest neighbour)."""
    rows = panel_rows(recon, truth)
    cells = [
        [_label(name, cell)] + [_upscale(to_uint8(img), cell) for img in row]
        for name, row in zip(ROWS, rows)
    ]
    # the label column is wider than a cell: pad every image cell to the label width
    width = max(LABEL_WIDTH, cell)
    padded = [[np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0))) for c in row] for row in cells]
    return save_array(tile(padded), path)
