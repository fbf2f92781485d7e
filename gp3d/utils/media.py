"""Writing image grids and videos (PIL / imageio: torchvision.io is unusable on CPU torch)."""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] in [-1, 1] (C = 1 or 3) -> HxWx3 uint8, clamped as the original does for saving."""
    x = ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[0] == 1:
        x = x.repeat(3, 1, 1)
    return x.permute(1, 2, 0).numpy()


def depth_to_image(depth: torch.Tensor, near: float, far: float) -> torch.Tensor:
    """Metric depth [B, 1, H, W] -> [-1, 1] for display (near = -1, far = +1), spec 8.4."""
    return ((depth - near) / (far - near) * 2 - 1).clamp(-1, 1)


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> [C, rows*H, nrow*W] with ``padding`` pixels of -1 between cells."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = images.new_full(
        (c, rows * (h + padding) + padding, nrow * (w + padding) + padding), -1.0
    )
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def save_image(img: torch.Tensor, path: str | Path) -> Path:
    """Save a [C, H, W] image in [-1, 1] as PNG/JPEG (written to a temp file, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    Image.fromarray(to_uint8(img)).save(tmp)
    os.replace(tmp, path)
    return path


def save_video(frames: list[torch.Tensor], path: str | Path, fps: int = 25) -> Path:
    """Save [C, H, W] frames in [-1, 1] as mp4 (imageio-ffmpeg) or, failing that, a GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [to_uint8(f) for f in frames]
    if path.suffix == ".mp4":
        try:
            import imageio.v2 as imageio

            tmp = path.with_name(f".{path.stem}.tmp.mp4")
            # macro_block_size=1 keeps odd sizes; yuv420p for players that need it.
            imageio.mimwrite(
                tmp,
                arrays,
                fps=fps,
                codec="libx264",
                quality=8,
                macro_block_size=1,
                pixelformat="yuv420p" if all(s % 2 == 0 for s in arrays[0].shape[:2]) else None,
            )
            os.replace(tmp, path)
            return path
        except Exception:  # no ffmpeg: fall back to GIF next to the requested path
            path = path.with_suffix(".gif")
    tmp = path.with_name(f".{path.stem}.tmp.gif")
    images = [Image.fromarray(a) for a in arrays]
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    os.replace(tmp, path)
    return path
