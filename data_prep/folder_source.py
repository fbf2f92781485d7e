"""Indexing an image collection on disk: ImageNet-style class folders or a flat folder.

Conventions (spec 9, issue 4):

- **Class folders**: every sub-folder of the root that holds images (at any depth) is a class;
  labels are indices into the **sorted folder names** (ImageNet's ``n01440764`` ... order) unless
  a mapping file is given. Images directly in the root are then skipped (``outside_class``).
- **Flat folder** (SDIP Dogs / Elephants, LSUN Horses): no sub-folder holds images, so there is a
  single class (label 0) named after the folder.
- **Train split only**: a root holding a ``train/`` folder is indexed from ``train/`` (the
  original trains on ImageNet's train split).
- Depth maps beside images (``<stem>_depth.png``, the original releases; also ``<stem>._depth.png``)
  and hidden files are not images. Two files with the same stem in one folder (``a.jpg`` and
  ``a.png``) would share a depth map name: the first in sorted order is kept, the other skipped
  (``duplicate_stem``).
- Order: records are sorted by relative path (POSIX separators), so the index is deterministic.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.common import DatasetNotFoundError, temp_path

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".ppm",
)  # fmt: skip
DEPTH_SUFFIXES = ("_depth.png", "._depth.png")
OUTSIDE_CLASS, DUPLICATE_STEM = "outside_class", "duplicate_stem"


@dataclass(frozen=True)
class ImageRecord:
    relpath: str  # POSIX path relative to the index root
    label: int
    class_name: str
    offset: int = -1  # a tar member's data offset and size (``tar_source.py``); -1: a file
    size: int = -1


@dataclass
class FolderIndex:
    root: Path  # the folder the relative paths start from (``<src>/train`` for ImageNet)
    records: list[ImageRecord]
    class_names: list[str]  # index -> name (folder name, or the mapping's human name)
    class_folders: list[str]  # index -> folder name ("" for a flat folder)
    skipped: list[tuple[str, ...]] = field(default_factory=list)  # (relpath, reason[, detail])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def path(self, record: ImageRecord) -> Path:
        return self.root / record.relpath


def is_depth_file(name: str) -> bool:
    return name.lower().endswith(DEPTH_SUFFIXES)


def is_image_file(name: str) -> bool:
    return (
        not name.startswith(".")
        and name.lower().endswith(IMAGE_EXTENSIONS)
        and not is_depth_file(name)
    )


def depth_relpath(relpath: str) -> str:
    """Where a depth map for ``relpath`` lives, relative to a depth root: ``<stem>_depth.png``."""
    p = Path(relpath)
    return (p.parent / f"{p.stem}_depth.png").as_posix()


def _walk_images(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if is_image_file(f))
    return found


def read_class_map(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(folders, names) in label order from a mapping file.

    Accepted: JSON ``{"n01440764": 0, ...}`` or ``{"n01440764": {"index": 0, "name": "tench"}}``;
    or text with one ``<folder> [human name]`` per line in label order (ImageNet's
    ``LOC_synset_mapping.txt``).
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
        entries = []
        for folder, v in raw.items():
            index, name = (v, folder) if isinstance(v, int) else (v["index"], v.get("name", folder))
            entries.append((int(index), folder, str(name)))
        entries.sort()
        if [e[0] for e in entries] != list(range(len(entries))):
            raise ValueError(f"{path}: class indices must be 0..{len(entries) - 1}, each once")
        return [e[1] for e in entries], [e[2] for e in entries]
    folders, names = [], []
    for line in text.splitlines():
        if line.strip():
            folder, _, name = line.strip().partition(" ")
            folders.append(folder)
            names.append(name.strip() or folder)
    return folders, names


def scan_image_folder(
    src: str | os.PathLike, class_map: str | os.PathLike | None = None, train_subdir: bool = True
) -> FolderIndex:
    """Index the images under ``src`` (see the module docstring for the conventions)."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetNotFoundError(f"source image folder {src} does not exist")
    root = src / "train" if train_subdir and (src / "train").is_dir() else src
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = {d.name: _walk_images(d) for d in subdirs}
    per_class = {k: v for k, v in per_class.items() if v}
    top_level = sorted(p for p in root.iterdir() if p.is_file() and is_image_file(p.name))
    skipped: list[tuple[str, ...]] = []
    if per_class:
        if class_map is not None:
            folders, names = read_class_map(class_map)
            unknown = sorted(set(per_class) - set(folders))
            if unknown:
                raise ValueError(
                    f"class folders {unknown[:5]} of {root} are not in the mapping {class_map}"
                )
        else:
            folders = sorted(per_class)
            names = list(folders)
        skipped += [(p.relative_to(root).as_posix(), OUTSIDE_CLASS) for p in top_level]
        items = [(p, label) for label, f in enumerate(folders) for p in per_class.get(f, [])]
    else:
        if not top_level:
            raise DatasetNotFoundError(f"no image files found under {root}")
        folders, names = [""], [src.name]
        items = [(p, 0) for p in top_level]
    records, seen_stems = [], set()
    for p, label in sorted(items, key=lambda t: t[0].relative_to(root).as_posix()):
        rel = p.relative_to(root).as_posix()
        stem_key = depth_relpath(rel).lower()
        if stem_key in seen_stems:
            skipped.append((rel, DUPLICATE_STEM))
            continue
        seen_stems.add(stem_key)
        records.append(ImageRecord(rel, label, names[label]))
    return FolderIndex(root, records, names, folders, skipped)


def read_selection(path: str | os.PathLike) -> list[str]:
    """Relative image paths, one per line (``#`` comments and blank lines ignored)."""
    lines = Path(path).read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def write_selection(path: str | os.PathLike, relpaths: list[str], header: str = "") -> Path:
    """Write a selection list atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w") as f:
            for line in header.splitlines():
                f.write(f"# {line}\n")
            f.writelines(f"{r}\n" for r in relpaths)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
