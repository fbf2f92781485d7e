"""Sample decoding: encoded bytes -> raw arrays -> normalised tensors.

Normalisation (spec 7.3 image uint8 / 127.5 - 1; spec 5.1 depth raw / 65536 * 2 - 1) is kept
apart from decoding so the loader can apply it once per batch: one in-place pass over a
contiguous batch instead of several temporaries per sample. Both paths run the same float32
operations in the same order, so they give bit-identical values.
"""

import io
from typing import Any

import cv2
import numpy as np
import torch
import webdataset as wds
from PIL import Image

from gp3d.data.bad_samples import BadSample, field_reason
from gp3d.data.format import IMAGE_KEYS  # noqa: F401  (re-exported)
from gp3d.data.pixels import to_rgb


def decode_image_u8(data: bytes) -> np.ndarray:
    """Encoded image -> uint8 ``[H, W, 3]`` (possibly read-only). Shards hold 8-bit RGB; other
    modes go through ``gp3d.data.pixels.to_rgb`` (16-bit scaled, not clipped as PIL's
    ``convert`` does; alpha over white), like the images ``write_shards`` converts."""
    with Image.open(io.BytesIO(data)) as img:
        # convert() of an RGB image is a full copy: only convert other modes
        return np.asarray(img if img.mode == "RGB" else to_rgb(img))


_COLOUR_MODES = ("LA", "RGB", "RGBA")  # Pillow's modes for 16-bit grey+alpha / RGB / RGBA PNGs


def png16_first_channel(data: bytes) -> np.ndarray | None:
    """The first channel of a 16-bit PNG of any layout as uint16 ``[H, W]``, or None when the
    PNG is 8-bit. Pillow reads 16-bit grey+alpha, RGB and RGBA PNGs as 8 bits a channel (the
    low byte is lost), so these go through OpenCV (libpng), which keeps 16 bits.

    Depth is the first channel (grey, or R of RGB(A)), as the original loader reads channel 0
    (spec 5.1); other channels (alpha, copies of the grey) are ignored.
    """
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("OpenCV cannot decode this PNG (corrupt or truncated)")
    if arr.dtype != np.uint16:
        return None
    # OpenCV orders colour as BGR(A) and expands grey+alpha to BGRA: the first PNG channel is 2.
    return arr if arr.ndim == 2 else np.ascontiguousarray(arr[..., 2])


def decode_depth_raw(data: bytes) -> np.ndarray:
    """Depth PNG -> raw 16-bit depth ``[H, W]`` (uint16, or float32 for wider PNG modes).

    16-bit PNGs of every layout are used at full precision (see :func:`png16_first_channel`);
    8-bit ones (ZoeDepth-style) are multiplied by 256; of a multi-channel PNG, channel 0 is
    used (as the original loader does).
    """
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "PNG" and img.mode in _COLOUR_MODES:  # header only: 16 or 8 bit?
            wide = png16_first_channel(data)
            if wide is not None:
                return wide
        arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr.astype(np.uint16) << 8  # x 256, exact in 16 bits
    if arr.dtype == np.uint16:
        return arr
    return arr.astype(np.float32)


def decode_embedding_raw(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)


def decode_embedding(data: bytes) -> torch.Tensor:
    return torch.from_numpy(decode_embedding_raw(data))


def normalise_images(u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> contiguous float ``[..., 3, H, W]`` = u8 / 127.5 - 1."""
    out = torch.empty(u8.shape[:-3] + (3,) + u8.shape[-3:-1], dtype=torch.float32)
    out.copy_(u8.movedim(-1, -3))
    return out.div_(127.5).sub_(1.0)


def normalise_depths(raw: torch.Tensor) -> torch.Tensor:
    """Raw depth ``[..., H, W]`` -> float ``[..., 1, H, W]`` = raw / 65536 * 2 - 1 (spec 5.1)."""
    depth = raw.to(torch.float32, copy=True)
    return depth.unsqueeze(-3).div_(65536.0).mul_(2.0).sub_(1.0)


def _readonly_ok(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def decode_image(data: bytes) -> torch.Tensor:
    """Encoded 8-bit image -> float ``[3, H, W]`` in [-1, 1] (uint8 / 127.5 - 1, spec 7.3)."""
    return normalise_images(_readonly_ok(decode_image_u8(data)))


def decode_depth(data: bytes) -> torch.Tensor:
    """Depth PNG -> float ``[1, H, W]`` = raw / 65536 * 2 - 1 (spec 5.1); see
    :func:`decode_depth_raw`."""
    return normalise_depths(_readonly_ok(decode_depth_raw(data)))


def _label(data: bytes) -> int:
    return int(data)


def _decoder(use_embeddings: bool) -> wds.autodecode.Decoder:
    """webdataset's per-field decoder with gp3d's handlers: its built-in image handlers go through
    Pillow, which drops the low byte of 16-bit colour PNGs (issue 16 item 2), and its ``cls``
    handler is the same ``int``. ``depth.png`` comes first: the image handler's ``png`` would
    match it too."""
    handlers = [
        wds.handle_extension("depth.png", decode_depth_raw),
        wds.handle_extension(" ".join(IMAGE_KEYS), decode_image_u8),
        wds.handle_extension("cls", _label),
    ]
    only = ["depth.png", "cls", *IMAGE_KEYS]
    if use_embeddings:
        handlers.append(wds.handle_extension("emb.npy", decode_embedding_raw))
        only.append("emb.npy")
    return wds.autodecode.Decoder(handlers, only=only)  # other members stay undecoded bytes


class DecodeRaw:
    """Raw tar sample dict -> dict of arrays: image uint8 ``[H, W, 3]``, depth raw ``[H, W]``,
    label int[, embedding float32]; :func:`gp3d.data.shards.collate` normalises per batch.

    Decoding is webdataset's ``Decoder``; a sample that cannot be used raises
    :class:`~gp3d.data.bad_samples.BadSample` with its reason (undecodable field, missing member,
    wrong size, label outside ``[0, num_classes)``, non-finite or wrong-length embedding), which
    the loader's error handler counts and skips.
    """

    def __init__(
        self,
        resolution: int,
        use_embeddings: bool,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        self.resolution = resolution
        self.use_embeddings = use_embeddings
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.decoder = _decoder(use_embeddings)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        url, key = sample.get("__url__", "?"), sample.get("__key__", "?")
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        wanted = ["depth.png", "emb.npy"] if self.use_embeddings else ["depth.png"]
        missing = [k for k in wanted if k not in sample] + ([] if image_key else ["image"])
        if missing:
            raise BadSample("missing", url, key, "no " + ", ".join(missing))
        try:
            sample = self.decoder(sample)
        except wds.autodecode.DecodingError as err:
            cause = err.__cause__
            raise BadSample(field_reason(err.k), url, key, f"{err.k}: {cause!r}") from err
        image, depth = sample[image_key], sample["depth.png"]
        size = (self.resolution, self.resolution)
        if image.shape[:2] != size or depth.shape != size:
            raise BadSample(
                "shape", url, key,
                f"image {tuple(image.shape[:2])} / depth {tuple(depth.shape)}, expected {size} "
                "(the manifest's resolution)",
            )  # fmt: skip
        label = sample.get("cls", 0)
        if self.num_classes is not None and not 0 <= label < max(self.num_classes, 1):
            raise BadSample("label", url, key, f"class {label} outside [0, {self.num_classes})")
        out = {"image": image, "depth": depth, "label": label}
        if self.use_embeddings:
            emb = sample["emb.npy"]
            if emb.ndim != 1 or (self.embedding_dim not in (None, emb.shape[0])):
                raise BadSample(
                    "embedding", url, key,
                    f"shape {emb.shape}, expected ({self.embedding_dim},) (the manifest's)",
                )  # fmt: skip
            if not np.isfinite(emb).all():
                raise BadSample("embedding", url, key, "NaN or Inf in the teacher features")
            out["embedding"] = emb
        return out


class Decode(DecodeRaw):
    """Raw tar sample dict -> dict of normalised tensors (image ``[3, H, W]``, depth
    ``[1, H, W]``, label[, embedding]): :class:`DecodeRaw` plus per-sample normalisation."""

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = super().__call__(sample)
        out["image"] = normalise_images(_readonly_ok(out["image"]))
        out["depth"] = normalise_depths(_readonly_ok(out["depth"]))
        if "embedding" in out:
            out["embedding"] = torch.from_numpy(out["embedding"])
        return out
