"""Reading what the inversion command is given: photos and optional depth maps.

Accepted images: RGB; greyscale (L) and palette (P) images, converted to RGB (a greyscale photo
is still a photo: its three channels are equal); RGBA / LA only when fully opaque (transparent
pixels have no colour to fit, flatten them onto a background first). Rejected: 16-bit / float
single-channel files (these are usually depth maps), CMYK and other modes. Images are
centre-cropped to a square and resized (Lanczos) to the render resolution.

Depth maps follow the data's convention (spec 3dgp 5.1): a 16-bit PNG of LeReS depth (larger =
farther), or an 8-bit PNG multiplied by 256, normalised as raw / 65536 * 2 - 1; a ``.npy`` float
array [H, W] is taken as is. The inversion's depth loss is scale-and-shift invariant, so only the
shape matters. A depth map must have the image's size (before cropping).
"""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEPTH_SUFFIX = "_depth.png"  # spec 3dgp 5.1: foo.png -> foo_depth.png


def list_images(path: str | os.PathLike) -> list[Path]:
    """The image itself, or every image file in a folder (sorted, depth maps excluded)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; pass an image file or a folder of images")
    files = [
        p
        for p in sorted(path.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(DEPTH_SUFFIX)
    ]
    if not files:
        raise FileNotFoundError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot read it as an image ({err}); pass a PNG or JPEG") from err
    return img


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA"):
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            raise ValueError(
                f"{path}: has transparent pixels ({img.mode}); flatten it onto a background "
                "first, e.g. `convert in.png -background white -flatten out.png`"
            )
        img = img.convert("RGB")
    if img.mode == "L":
        img = img.convert("RGB")
    if img.mode != "RGB":
        raise ValueError(
            f"{path}: image mode {img.mode} is not RGB or greyscale (a 16-bit or float single "
            "channel is usually a depth map: pass it with --depth); save the photo as 8-bit RGB"
        )
    return img


def centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """PIL crop box (left, top, right, bottom) of the largest centred square of (w, h)."""
    w, h = size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return left, top, left + s, top + s


def load_image(path: str | os.PathLike, resolution: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """([1, 3, R, R] in [-1, 1], original (w, h)) of an image file; ValueError on bad input."""
    path = Path(path)
    img = _to_rgb(_open(path), path)
    size = img.size
    img = img.crop(centre_square(size)).resize((resolution, resolution), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return x / 127.5 - 1.0, size


def load_depth(
    path: str | os.PathLike, image_size: tuple[int, int], resolution: int
) -> torch.Tensor:
    """[1, 1, R, R] depth for an image of ``image_size`` (w, h), cropped and resized like it."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path).astype(np.float32)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read it as a .npy depth array ({err})") from err
        arr = arr.squeeze()
    else:
        img = _open(path)
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"{path}: a depth map must have one channel, got mode {img.mode}")
        if img.mode in ("L", "P"):
            arr = arr * 256.0  # 8-bit depth (ZoeDepth), spec 3dgp 5.1
        arr = arr / 65536.0 * 2.0 - 1.0
    if arr.ndim != 2 or (arr.shape[1], arr.shape[0]) != tuple(image_size):
        raise ValueError(
            f"{path}: depth map is {arr.shape[::-1]} (w, h) but the image is "
            f"{tuple(image_size)}; pass the depth map of this image at the image's size"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: depth map has NaN or infinite values")
    img = Image.fromarray(arr).crop(centre_square(image_size))
    img = img.resize((resolution, resolution), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32).copy())[None, None]
