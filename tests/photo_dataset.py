"""A small ImageNet-style dataset of real photographs for tests (no download).

    from tests.photo_dataset import make_photo_dataset
    ds = make_photo_dataset(tmp_path / "photos", per_class=3, max_side=96, odd_files=True,
                            depth="beside", train_subdir=False, seed=0)
    ds.src           # folder to give the tools (holds train/ when train_subdir=True)
    ds.image_root    # folder the relative paths start from (src or src/train)
    ds.class_folders # sorted class folder names = label order
    ds.kept          # {relpath: label} of the images a pipeline must keep (min_size 6..64)
    ds.skips         # {reason: count} it must skip (reasons of data_prep.images/folder_source/
                     #  shard_worker); without depth maps, every image would be "no_depth"
    ds.modes         # {PIL mode: count} of the kept images' original modes

Photos come from scikit-image's bundled data (astronaut, chelsea, coffee, rocket, the Middlebury
motorcycle stereo pair): every clean image is a random crop (and maybe a mirror) of one photo,
resized so its long side is ``max_side``, saved as JPEG or PNG. ``depth``:

- ``"beside"``: 16-bit ``<stem>_depth.png`` next to each image (the original releases' layout),
  normalised ``estimate / max * 60000`` (``common.encode_relative_depth``). The motorcycle's
  depth is the inverse of its ground-truth disparity; the others get a smooth synthetic depth
  (farther towards the top, modulated by brightness). One image uses the ``<stem>._depth.png``
  spelling and one an 8-bit depth PNG;
- ``"none"``: no depth maps at all (for depth estimators);
- a ``Path``: a separate depth root mirroring the image tree (``<depth>/<stem>_depth.png``).

``odd_files=True`` adds the awkward files real collections hold. Converted and kept: grayscale,
CMYK JPEG, 16-bit PNG, RGBA PNG, palette PNG. Skipped: a 5x4 image (``too_small``), a truncated
JPEG (``truncated``), text named ``.jpg`` (``unreadable``), a second file with an existing stem
(``duplicate_stem``), an image without a depth map (``no_depth``, only when depth is written),
a depth map of another shape (``depth_mismatch``, ditto) and an image outside every class folder
(``outside_class``). With ``train_subdir=True`` a ``val/`` folder is added that must be ignored.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from data_prep.common import encode_relative_depth

CLASSES = ("n04_motorcycle", "n02_cat", "n01_astronaut", "n05_rocket", "n03_coffee")


@dataclass
class PhotoDataset:
    src: Path
    image_root: Path
    class_folders: list[str]
    kept: dict[str, int] = field(default_factory=dict)
    skips: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)

    @property
    def num_kept(self) -> int:
        return len(self.kept)


def _photos() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """class folder -> (RGB photo, true depth or None)."""
    left, _, disp = skdata.stereo_motorcycle()
    disp = np.where(np.isfinite(disp) & (disp > 0), disp, np.nan)
    disp = np.nan_to_num(disp, nan=float(np.nanmin(disp)))
    return {
        "n04_motorcycle": (left, 1.0 / disp),
        "n02_cat": (skdata.chelsea(), None),
        "n01_astronaut": (skdata.astronaut(), None),
        "n05_rocket": (skdata.rocket(), None),
        "n03_coffee": (skdata.coffee(), None),
    }


def _synthetic_depth(rgb: np.ndarray) -> np.ndarray:
    h = rgb.shape[0]
    rows = np.linspace(2.0, 1.0, h)[:, None]  # farther towards the top, like most photos
    return rows + 0.3 * rgb.mean(axis=2) / 255.0


def _crop(rng: np.random.Generator, a: np.ndarray, depth: np.ndarray, max_side: int, flip: bool):
    h, w = a.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    a, depth = a[top : top + ch, left : left + cw], depth[top : top + ch, left : left + cw]
    if flip:
        a, depth = a[:, ::-1], depth[:, ::-1]
    scale = max_side / max(ch, cw)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    img = Image.fromarray(np.ascontiguousarray(a)).resize(size, Image.Resampling.BICUBIC)
    d = Image.fromarray(np.ascontiguousarray(depth).astype(np.float32), mode="F")
    return img, np.asarray(d.resize(size, Image.Resampling.BILINEAR))


class _Writer:
    """Writes images (+ depth) into the tree and keeps the expected outcome."""

    def __init__(self, ds: PhotoDataset, depth: str | Path) -> None:
        self.ds, self.depth = ds, depth

    def depth_path(self, rel: str, suffix: str = "_depth.png") -> Path | None:
        p = Path(rel)
        base = self.ds.image_root if self.depth == "beside" else self.depth
        if self.depth == "none":
            return None
        path = Path(base) / p.parent / f"{p.stem}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def image(
        self, rel: str, img: Image.Image, depth: np.ndarray | None, label: int,
        suffix: str = "_depth.png", bits: int = 16, **save_kw,
    ) -> None:  # fmt: skip
        """Save an image that must be kept, with its depth map unless ``depth`` is None."""
        path = self.ds.image_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, **save_kw)
        dpath = self.depth_path(rel, suffix)
        if depth is not None and dpath is not None:
            if bits == 16:
                dpath.write_bytes(encode_relative_depth(np.maximum(depth, 1e-3)))
            else:
                Image.fromarray(np.clip(depth / depth.max() * 255, 1, 255).astype(np.uint8)).save(
                    dpath
                )
        if dpath is None or depth is not None:
            self.ds.kept[rel] = label
            self.ds.modes[Image.open(path).mode] += 1
        else:
            self.ds.skips["no_depth"] += 1

    def skip(self, rel: str, payload: bytes, reason: str, with_depth: bool = True) -> None:
        path = self.ds.image_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        dpath = self.depth_path(rel)
        if with_depth and dpath is not None:
            dpath.write_bytes(encode_relative_depth(np.ones((8, 8))))
        self.ds.skips[reason] += 1


def make_photo_dataset(
    root: str | Path,
    per_class: int = 3,
    max_side: int = 96,
    odd_files: bool = True,
    depth: str | Path = "beside",
    train_subdir: bool = False,
    seed: int = 0,
) -> PhotoDataset:
    """Build the dataset under ``root`` (see the module docstring); returns what to expect."""
    root = Path(root)
    image_root = root / "train" if train_subdir else root
    folders = sorted(CLASSES)
    ds = PhotoDataset(root, image_root, folders)
    w = _Writer(ds, depth)
    rng = np.random.default_rng(seed)
    photos = _photos()
    for folder in CLASSES:  # not in label order on purpose: labels follow the sorted names
        label = folders.index(folder)
        rgb, true_depth = photos[folder]
        est = true_depth if true_depth is not None else _synthetic_depth(rgb)
        for i in range(per_class):
            img, d = _crop(rng, rgb, est, max_side, flip=bool(i % 2))
            ext, kw = ("jpg", {"quality": 90}) if i % 2 == 0 else ("png", {})
            w.image(f"{folder}/{folder[4:]}_{i:02d}.{ext}", img, d, label, **kw)
    if train_subdir:  # other splits are never read (train split only, as in the original)
        val = root / "val" / folders[0]
        val.mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(val / "val_0.jpg")
    if odd_files:
        _add_odd_files(w, rng, photos, max_side)
    return ds


def _add_odd_files(w: _Writer, rng: np.random.Generator, photos: dict, max_side: int) -> None:
    folders = w.ds.class_folders
    lab = {f: folders.index(f) for f in folders}
    cat, _ = photos["n02_cat"]
    img, d = _crop(rng, cat, _synthetic_depth(cat), max_side, flip=False)
    w.image("n02_cat/cmyk_cat.jpg", img.convert("CMYK"), d, lab["n02_cat"], quality=90)
    grey = Image.fromarray(skdata.camera()).resize((max_side, max_side))
    w.image("n01_astronaut/grey_camera.png", grey, _synthetic_depth(np.asarray(grey.convert("RGB"))),
            lab["n01_astronaut"])  # fmt: skip
    coffee, _ = photos["n03_coffee"]
    img, d = _crop(rng, coffee, _synthetic_depth(coffee), max_side, flip=False)
    scan = np.asarray(img.convert("L"), dtype=np.uint16) * 257
    w.image("n03_coffee/scan16.png", Image.fromarray(scan), d, lab["n03_coffee"])
    rgba = img.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:, : alpha.shape[1] // 3] = 0  # a transparent band: composited over white
    rgba.putalpha(Image.fromarray(alpha))
    w.image("n03_coffee/rgba_coffee.png", rgba, d, lab["n03_coffee"])
    rocket, _ = photos["n05_rocket"]
    img, d = _crop(rng, rocket, _synthetic_depth(rocket), max_side, flip=True)
    w.image("n05_rocket/palette_rocket.png", img.quantize(64), d, lab["n05_rocket"])
    # depth spelled <stem>._depth.png, and an 8-bit depth PNG (ZoeDepth-style, x256 on load)
    img, d = _crop(rng, rocket, _synthetic_depth(rocket), max_side, flip=False)
    w.image("n05_rocket/dotted_depth.jpg", img, d, lab["n05_rocket"], suffix="._depth.png")
    img, d = _crop(rng, cat, _synthetic_depth(cat), max_side, flip=True)
    w.image("n02_cat/depth8_cat.png", img, d, lab["n02_cat"], bits=8)
    # skipped
    w.skip("n05_rocket/tiny.png", _png_bytes(Image.new("RGB", (5, 4), (200, 30, 30))), "too_small")
    full = _jpeg_bytes(img)
    w.skip("n02_cat/truncated.jpg", full[: len(full) // 2], "truncated")
    w.skip("n04_motorcycle/not_an_image.jpg", b"this is a text file, not a JPEG\n", "unreadable")
    w.skip("n01_astronaut/grey_camera.tif", full, "duplicate_stem", with_depth=False)  # .png first
    w.skip("stray_outside_classes.jpg", full, "outside_class", with_depth=False)
    if w.depth != "none":
        img, _ = _crop(rng, cat, _synthetic_depth(cat), max_side, flip=False)
        img.save(w.ds.image_root / "n02_cat/no_depth.jpg")
        w.ds.skips["no_depth"] += 1
        img.save(w.ds.image_root / "n02_cat/wrong_depth.jpg")
        wrong = np.ones((img.width, img.height * 2))  # transposed and stretched
        w.depth_path("n02_cat/wrong_depth.jpg").write_bytes(encode_relative_depth(wrong))
        w.ds.skips["depth_mismatch"] += 1


def _png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()
