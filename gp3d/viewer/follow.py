"""Which file the viewer loads, and noticing when a training run writes a newer one.

A run folder (``outputs/<exp>/<run>``, its ``checkpoints/`` folder) resolves to its
``last.ckpt``, which :mod:`gp3d.training` replaces atomically (temp file + rename) at every
checkpoint; so a changed (mtime, size, inode) means a complete new file, never a partial one.
"""

import os
from dataclasses import dataclass
from pathlib import Path

LAST = "last.ckpt"


@dataclass(frozen=True)
class Source:
    path: Path  # the file to load
    follow: bool  # reload when it changes (a run folder was given)


def resolve_source(arg: str | os.PathLike, follow: bool | None = None) -> Source:
    """A checkpoint / generator file, or a run folder -> the file to load. A folder is followed
    unless ``follow=False``; a file only with ``follow=True``."""
    p = Path(arg)
    if p.is_file():
        return Source(p, bool(follow))
    if p.is_dir():
        for cand in (p / "checkpoints" / LAST, p / LAST):
            if cand.is_file():
                return Source(cand, follow is not False)
        raise FileNotFoundError(
            f"{p} is a folder without checkpoints/{LAST} or {LAST}: pass a training run folder "
            "(outputs/<experiment>/<run>) once it has written a checkpoint, a .ckpt file, or a "
            "file from `python -m gp3d.export`"
        )
    raise FileNotFoundError(
        f"{p} does not exist: pass a training checkpoint (.ckpt), a run folder or a file from "
        "`python -m gp3d.export`"
    )


def signature(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of ``path``, None while it is missing (between unlink and rename
    on some systems)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CheckpointFollower:
    """``changed()`` is True once per new version of the file after :meth:`mark_loaded`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._loaded = signature(self.path)

    def mark_loaded(self, sig: tuple[int, int, int] | None = None) -> None:
        self._loaded = sig if sig is not None else signature(self.path)

    def changed(self) -> tuple[int, int, int] | None:
        """The new file's signature when it differs from the loaded one, else None."""
        sig = signature(self.path)
        if sig is None or sig == self._loaded:
            return None
        return sig
