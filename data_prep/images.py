"""Reading real-world image files robustly: any PIL mode to 8-bit RGB, or a clear skip reason.

ImageNet-scale folders hold CMYK and grayscale JPEGs, palette/RGBA PNGs, 16-bit scans, truncated
downloads and the odd non-image. :func:`load_rgb` converts what can be converted and raises
:class:`ImageSkip` (with a short machine-readable ``reason``) for what cannot, so a pipeline
counts skips instead of crashing halfway through a million images.
"""

import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from gp3d.data.decode import png16_first_channel
from gp3d.data.pixels import ALPHA_BACKGROUND, to_rgb  # noqa: F401  (one conversion for loader and writers)

# Reasons recorded in manifests ("skipped": {reason: count, ...}).
UNREADABLE, TRUNCATED, TOO_SMALL, TOO_LARGE = "unreadable", "truncated", "too_small", "too_large"
MAX_PIXELS = 30_000 * 30_000  # larger than any photo; guards against decompression bombs


class ImageSkip(Exception):
    """This file cannot become a training image; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _open(path: str | os.PathLike | BinaryIO) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise ImageSkip(TOO_LARGE, f"{img.width}x{img.height} pixels")
            img.load()  # decodes now: truncated data raises here, not later in a worker
    except ImageSkip:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageSkip(TOO_LARGE, str(err)) from err
    except UnidentifiedImageError as err:
        raise ImageSkip(UNREADABLE, f"not an image PIL can identify ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports truncation as OSError
        reason = TRUNCATED if "truncated" in str(err).lower() else UNREADABLE
        raise ImageSkip(reason, str(err)) from err
    except Exception as err:  # corrupt headers also raise TypeError, KeyError, struct.error...
        raise ImageSkip(UNREADABLE, f"{type(err).__name__}: {err}") from err
    return img


def load_rgb_and_mode(
    path: str | os.PathLike | BinaryIO, min_size: int = 1
) -> tuple[np.ndarray, str]:
    """Like :func:`load_rgb`, plus the file's original PIL mode (``"CMYK"``, ``"L"``, ...), so a
    pipeline can report how many images it converted."""
    img = _open(path)
    if min(img.size) < min_size:
        raise ImageSkip(TOO_SMALL, f"{img.width}x{img.height} < {min_size} px on the short side")
    try:
        return np.asarray(to_rgb(img)), img.mode
    except Exception as err:  # e.g. TypeError from a corrupt second TIFF frame (n_frames)
        raise ImageSkip(UNREADABLE, f"cannot convert mode {img.mode}: {err!r}") from err


def load_rgb(path: str | os.PathLike | BinaryIO, min_size: int = 1) -> np.ndarray:
    """uint8 ``[H, W, 3]`` of an image file; raises :class:`ImageSkip` when it cannot be used.

    ``min_size``: images whose short side is below it are skipped (``too_small``): upsampling a
    thumbnail many times produces blur the discriminator learns to detect.
    """
    return load_rgb_and_mode(path, min_size)[0]


def load_depth(path: str | os.PathLike) -> np.ndarray:
    """A depth PNG as uint16 ``[H, W]``: 16-bit kept as is (every PNG layout, see
    :func:`gp3d.data.decode.png16_first_channel`), 8-bit scaled by 256; of a multi-channel map,
    channel 0 (spec 5.1, as the original loader)."""
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img)
        return np.clip(a, 0, 65535).astype(np.uint16)
    if img.mode in ("RGB", "RGBA", "LA") and img.format == "PNG":
        with open(path, "rb") as f:
            data = f.read()
        try:
            wide = png16_first_channel(data)
        except ValueError as err:
            raise ImageSkip(UNREADABLE, f"{os.fspath(path)}: {err}") from err
        if wide is not None:
            return wide
    if img.mode in ("RGB", "RGBA", "LA"):
        return np.asarray(img, dtype=np.uint16)[..., 0] * 256
    if img.mode in ("L", "P"):
        return np.asarray(img.convert("L"), dtype=np.uint16) * 256
    raise ImageSkip(UNREADABLE, f"depth map of unsupported mode {img.mode}")


def center_crop_square(a: np.ndarray) -> np.ndarray:
    """The centred square of side min(H, W) (spec 9 step 4)."""
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return a[top : top + s, left : left + s]


def crop_resize(a: np.ndarray, resolution: int, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """Centre-crop to a square, then resize to ``resolution``^2 (Lanczos, as the original).

    Works for uint8 RGB/grey and uint16 depth (resized in float32 mode ``F`` so 16-bit values
    survive; Lanczos can ring at depth edges, as in the original, so the result is clipped).
    """
    sq = center_crop_square(a)
    if sq.shape[0] == resolution:
        return np.ascontiguousarray(sq)
    if sq.dtype == np.uint16:
        f = Image.fromarray(sq.astype(np.float32), mode="F")
        out = np.asarray(f.resize((resolution, resolution), resample))
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return np.asarray(Image.fromarray(sq).resize((resolution, resolution), resample))
