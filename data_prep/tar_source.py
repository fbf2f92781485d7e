"""A folder of WebDataset / img2dataset tars as an image source, read in place (never unpacked).

Layout: ``SRC`` holds ``*.tar`` files (at its top level; sub-folders are searched too). Members
follow the WebDataset convention ``<key>.<ext>``, the key being the member path up to the first
dot of its file name: one image (``jpg``/``jpeg``/``png``/``webp``/...) per key plus optional
``cls``/``json``/``txt`` members (img2dataset writes ``jpg`` + ``json`` + ``txt``).

- **Records**: one per key that has an image, ``relpath = "<tar relpath>/<image member>"`` (so
  skip lists and ``meta.json`` name the tar and the key), with the member's byte offset and size
  in the tar, sorted by relpath like a folder index. Images are read by seeking to that offset.
  Depth maps mirror these relpaths under ``--depth-dir`` (``<tar>.tar/<key>_depth.png``).
- **Labels** (``label_key``): ``cls`` (the ``cls`` member's text), ``json:<field>`` (a field of
  the ``json`` member), ``txt`` or ``none`` (one class). Values that are all integers are class
  indices as they are (``num_classes`` = max + 1); other values become indices of their sorted
  set, or of ``--class-map`` (its folder column lists the values). A key without the label is
  skipped (``no_label``), one whose value the class map lacks too (``unknown_label``).
- **Damage**: a tar that cannot be read to its end-of-archive block is skipped whole
  (``unreadable_tar``, counted once, named with the error); a corrupt image member is skipped by the image reader with its
  tar and key in the skip list.
"""

import functools
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from data_prep.common import DatasetNotFoundError
from data_prep.folder_source import IMAGE_EXTENSIONS, FolderIndex, ImageRecord, read_class_map
from data_prep.images import TRUNCATED, ImageSkip

UNREADABLE_TAR, NO_LABEL, UNKNOWN_LABEL = "unreadable_tar", "no_label", "unknown_label"
TAR_SUFFIX = ".tar"
IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
MAX_LABEL_BYTES = 1 << 20  # a json / cls member larger than this is not metadata


@dataclass(frozen=True)
class _Key:
    image: tarfile.TarInfo
    label: str | None


def is_tar_folder(src: str | os.PathLike) -> bool:
    """Whether ``src`` is a tar source: a folder with ``*.tar`` files at its top level."""
    src = Path(src)
    return src.is_dir() and any(p.suffix == TAR_SUFFIX and p.is_file() for p in src.iterdir())


def _split(name: str) -> tuple[str, str]:
    """WebDataset key and extension of a member name (``a/b.c.d`` -> ``a/b``, ``c.d``)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _label_of(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], label_key: str
) -> str | None:
    """The label text of one key (None: it has none)."""
    if label_key == "none":
        return "0"
    ext, _, field = label_key.partition(":")
    info = members.get(ext)
    if info is None or info.size > MAX_LABEL_BYTES:
        return None
    f = tar.extractfile(info)
    text = f.read().decode("utf-8", errors="replace") if f is not None else ""
    if ext != "json":
        return text.strip() or None
    try:
        value = json.loads(text).get(field)
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def _scan_tar(path: Path, label_key: str) -> dict[str, _Key]:
    """Keys of one tar with an image member; raises tarfile/OS errors for a damaged tar."""
    by_key: dict[str, dict[str, tarfile.TarInfo]] = {}
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:  # headers only: member data is seeked over
            if info.isfile():
                key, ext = _split(info.name)
                by_key.setdefault(key, {})[ext.lower()] = info
        # tarfile ends quietly at a header cut short: demand the end-of-archive zero block
        tar.fileobj.seek(tar.offset)  # type: ignore[union-attr]
        tail = tar.fileobj.read(tarfile.BLOCKSIZE)  # type: ignore[union-attr]
        if len(tail) < tarfile.BLOCKSIZE or tail.count(0) != tarfile.BLOCKSIZE:
            raise tarfile.ReadError(f"no end-of-archive block after {tar.offset} bytes: cut short")
        keys = {}
        for key, members in by_key.items():
            image_ext = next((e for e in IMAGE_EXTS if e in members), None)
            if image_ext is not None:
                keys[key] = _Key(members[image_ext], _label_of(tar, members, label_key))
    return keys


def _label_table(
    values: set[str], class_map: str | os.PathLike | None
) -> tuple[dict[str, int], list[str], list[str]]:
    """(value -> index, class names, class 'folders' = label values) for the label values."""
    if class_map is not None:
        folders, names = read_class_map(class_map)
        return {v: i for i, v in enumerate(folders)}, names, folders
    if values and all(v.lstrip("-").isdigit() and int(v) >= 0 for v in values):
        n = max(int(v) for v in values) + 1
        return {v: int(v) for v in values}, [str(i) for i in range(n)], [str(i) for i in range(n)]
    ordered = sorted(values)
    return {v: i for i, v in enumerate(ordered)}, ordered, ordered


def scan_tar_folder(
    src: str | os.PathLike, label_key: str = "cls", class_map: str | os.PathLike | None = None
) -> FolderIndex:
    """Index the tars under ``src`` (see the module docstring)."""
    if label_key not in ("cls", "txt", "none") and not label_key.startswith("json:"):
        raise ValueError(f"--label-key must be cls, txt, json:<field> or none, not {label_key!r}")
    src = Path(src)
    tars = sorted(src.rglob(f"*{TAR_SUFFIX}"), key=lambda p: p.relative_to(src).as_posix())
    if not tars:
        raise DatasetNotFoundError(f"no {TAR_SUFFIX} files under {src}")
    found: list[tuple[str, _Key]] = []
    skipped: list[tuple[str, ...]] = []
    for path in tars:
        rel = path.relative_to(src).as_posix()
        try:
            keys = _scan_tar(path, label_key)
        except (tarfile.TarError, OSError, EOFError, ValueError) as err:
            skipped.append((rel, UNREADABLE_TAR, f"{type(err).__name__}: {err}"))
            continue
        found += [(f"{rel}/{k.image.name}", k) for k in keys.values()]
    values = {k.label for _, k in found if k.label is not None}
    if found and not values:
        raise DatasetNotFoundError(
            f"no key of the tars under {src} has a label for --label-key {label_key}: pass "
            "--label-key none (one class), json:<field>, txt or cls"
        )
    if label_key == "none":  # one class, as a flat image folder
        table, names, folders = {"0": 0}, [src.name], [""]
    else:
        table, names, folders = _label_table(values, class_map)
    records = []
    for relpath, k in sorted(found, key=lambda t: t[0]):
        if k.label is None or k.label not in table:
            skipped.append((relpath, NO_LABEL if k.label is None else UNKNOWN_LABEL, k.label or ""))
            continue
        label = table[k.label]
        records.append(ImageRecord(relpath, label, names[label], k.image.offset_data, k.image.size))
    return FolderIndex(src, records, names, folders, skipped)  # type: ignore[arg-type]


def tar_member(relpath: str) -> tuple[str, str] | None:
    """(tar relpath, member name) of a tar record's relpath; None for a plain file."""
    tar_rel, sep, member = relpath.partition(f"{TAR_SUFFIX}/")
    return (tar_rel + TAR_SUFFIX, member) if sep else None


@functools.lru_cache(maxsize=8)
def _member_table(tar_path: str) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of one tar (cached: readers go through records tar by tar)."""
    with tarfile.open(tar_path, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}


def open_image(root: Path, relpath: str, offset: int = -1, size: int = -1) -> Path | BinaryIO:
    """What the image readers open for a record: the file, or the tar member's bytes (read at
    ``offset`` when known, else located by name). Raises :class:`ImageSkip` for a cut-short
    member or a tar that cannot be read."""
    where = tar_member(relpath)
    if where is None:
        return root / relpath
    tar_path = root / where[0]
    try:
        if offset < 0:
            offset, size = _member_table(str(tar_path))[where[1]]
        with open(tar_path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except (OSError, KeyError, tarfile.TarError) as err:
        raise ImageSkip(UNREADABLE_TAR, f"{type(err).__name__}: {err}") from err
    if len(data) != size:
        raise ImageSkip(TRUNCATED, f"member has {len(data)} of {size} bytes (tar cut short)")
    return io.BytesIO(data)
