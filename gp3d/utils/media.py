"""Writing image grids and videos (PIL / imageio: torchvision.io is unusable on CPU torch)."""

import contextlib
import os
import warnings
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


# Turbo (Mikhailov, Google 2019) as its published polynomial approximation: colour channel =
# c0 + c1 x + ... + c5 x^5 for x in [0, 1]. Pure torch, so no matplotlib is needed.
_TURBO = torch.tensor(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)  # float32: MPS has no float64
COLORMAPS = ("turbo", "gray")


def turbo(x: torch.Tensor) -> torch.Tensor:
    """Values [B, 1, H, W] in [0, 1] (clamped) -> RGB [B, 3, H, W] in [0, 1] (turbo colormap)."""
    x = x.clamp(0, 1).float()
    powers = torch.stack([x[:, 0] ** k for k in range(6)], dim=1)  # [B, 6, H, W]
    rgb = torch.einsum("ck,bkhw->bchw", _TURBO.to(x.device), powers)
    return rgb.clamp(0, 1)


def colorize_depth(
    depth: torch.Tensor, near: float, far: float, colormap: str = "turbo"
) -> torch.Tensor:
    """Metric depth [B, 1, H, W] -> a [B, 3, H, W] display image in [-1, 1]: [near, far] mapped
    linearly onto the colormap (near = dark blue, far = dark red for turbo; spec 8.4)."""
    unit = (depth_to_image(depth, near, far) + 1) / 2
    if colormap == "gray":
        return (unit * 2 - 1).expand(-1, 3, -1, -1)
    if colormap == "turbo":
        return turbo(unit).to(depth.dtype) * 2 - 1
    raise ValueError(f"unknown depth colormap {colormap!r}; choose one of {COLORMAPS}")


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


def save_image(img: torch.Tensor, path: str | Path, quality: int = 95) -> Path:
    """Save a [C, H, W] image in [-1, 1] as PNG/JPEG (written to a temp file, then renamed);
    ``quality`` applies to JPEG (the original's image grids use q95, spec 8.4)."""
    return save_array(to_uint8(img), path, quality)


def save_array(array: np.ndarray, path: str | Path, quality: int = 95) -> Path:
    """Save an HxWx3 uint8 array as PNG/JPEG, atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    extra = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        Image.fromarray(array).save(tmp, **extra)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def tile(cells: list[list[np.ndarray]], padding: int = 2) -> np.ndarray:
    """Rows of equally sized HxWx3 uint8 cells -> one uint8 grid, black ``padding`` between."""
    h, w, c = cells[0][0].shape
    rows, cols = len(cells), max(len(r) for r in cells)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            y, x = padding + i * (h + padding), padding + j * (w + padding)
            grid[y : y + h, x : x + w] = cell
    return grid


class VideoWriter:
    """Streams [C, H, W] frames in [-1, 1] into an mp4 (imageio-ffmpeg, h264) or a GIF, so long
    or large videos need not be held in memory. Atomic: frames go to a temp file that replaces
    ``path`` only on a clean :meth:`close` (a failed run leaves no half video behind).

    ``crf`` sets the h264 constant rate factor (the original: 10 for inference videos, 20 for
    training videos, spec 8.4); None uses imageio's quality 8. When ffmpeg cannot write the
    mp4 the frames are kept and written as a GIF next to it (:attr:`path` tells which).
    """

    def __init__(self, path: str | Path, fps: int = 25, crf: int | None = None) -> None:
        self.path, self.fps, self.crf = Path(path), fps, crf
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        self._writer, self._frames, self._shape = None, [], None
        self._written = 0  # frames already in the ffmpeg stream

    def _open(self, shape) -> None:
        import imageio.v2 as imageio

        # macro_block_size=1 keeps the size; yuv420p (what players expect) needs even sides,
        # odd ones get yuv444p.
        self._writer = imageio.get_writer(
            self._tmp,
            fps=self.fps,
            codec="libx264",
            macro_block_size=1,
            pixelformat="yuv420p" if all(s % 2 == 0 for s in shape[:2]) else "yuv444p",
            output_params=[] if self.crf is None else ["-crf", str(self.crf)],
            quality=8 if self.crf is None else None,
        )

    def append(self, frame: torch.Tensor) -> None:
        array = to_uint8(frame)
        if self._shape is not None and array.shape != self._shape:
            raise ValueError(f"frame size {array.shape} differs from the first {self._shape}")
        self._shape = array.shape
        if self.path.suffix == ".mp4" and self._writer is None and not self._frames:
            try:
                self._open(array.shape)
            except Exception as err:  # no usable ffmpeg
                self._fallback(err)
        if self._writer is not None:
            try:
                self._writer.append_data(array)
                self._written += 1
                return
            except Exception as err:
                if self._written:  # those frames are in the mp4 only: a GIF would lack them
                    self.abort()
                    raise RuntimeError(
                        f"writing {self.path} failed after {self._written} frames: {err}"
                    ) from err
                self._fallback(err)
        self._frames.append(array)

    def _fallback(self, err: Exception) -> None:
        warnings.warn(f"writing {self.path} failed ({err}); writing a GIF instead", stacklevel=3)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._writer = None
        self._tmp.unlink(missing_ok=True)
        self.path = self.path.with_suffix(".gif")
        self._tmp = self._tmp.with_suffix(".gif")

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path (.mp4 or .gif)."""
        if self._writer is None and not self._frames:
            raise ValueError(f"no frames were written to {self.path}")
        if self._writer is not None:
            try:
                self._writer.close()
                # ffmpeg failures do not always raise: check the file.
                if not self._tmp.is_file() or self._tmp.stat().st_size == 0:
                    raise RuntimeError("ffmpeg wrote no video")
            except Exception as err:
                raise RuntimeError(f"writing {self.path} failed: {err}") from err
        else:
            images = [Image.fromarray(a) for a in self._frames]
            images[0].save(
                self._tmp,
                save_all=True,
                append_images=images[1:],
                duration=int(1000 / self.fps),
                loop=0,
            )
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def save_video(
    frames: list[torch.Tensor], path: str | Path, fps: int = 25, crf: int | None = None
) -> Path:
    """Save [C, H, W] frames in [-1, 1] as mp4 (h264) or GIF (see :class:`VideoWriter`)."""
    if not frames:
        raise ValueError("save_video needs at least one frame")
    with VideoWriter(path, fps, crf) as writer:
        for f in frames:
            writer.append(f)
        return writer.close()
