"""Image modes: any PIL image to 8-bit RGB, the one conversion the loader and data_prep share."""

import numpy as np
from PIL import Image, ImageOps

ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are composited over white


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (first frame of animations; EXIF orientation applied)."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if mode == "F":  # float images are scaled by their own range
            lo, hi = float(a.min()), float(a.max())
            a, peak = a - lo, max(hi - lo, 1e-12)
        img = Image.fromarray(np.clip(np.rint(a / peak * 255.0), 0, 255).astype(np.uint8))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ...
