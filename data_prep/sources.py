"""Which kind of image source ``SRC`` is: an image folder or a folder of WebDataset tars."""

import os

from data_prep.folder_source import FolderIndex, scan_image_folder
from data_prep.tar_source import is_tar_folder, scan_tar_folder


def scan_source(
    src: str | os.PathLike,
    class_map: str | os.PathLike | None = None,
    train_subdir: bool = True,
    label_key: str = "cls",
) -> FolderIndex:
    """Index ``src``: tars when it holds ``*.tar`` files at its top level (``tar_source.py``),
    else class folders or a flat folder (``folder_source.py``; ``label_key`` unused)."""
    if is_tar_folder(src):
        return scan_tar_folder(src, label_key, class_map)
    return scan_image_folder(src, class_map, train_subdir)
