"""Atomic file writes: a killed process never leaves a half-written file under its
final name."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write `path` through `write(temporary path)`, fsync it and rename it into place,
    so a killed process never leaves a half-written file under the final name."""
    path = Path(path)
    make_directories(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.filename is None:  # a failed write or fsync names no file: name ours
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def make_directories(directory: Path) -> None:
    """Create `directory` and its missing parents, each new one made durable by an fsync
    of the directory that holds it (a crash must not lose the folder a saved file is in)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_directory(new.parent)


def fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def check_writable(path: Path) -> None:
    """Raise the OSError that writing `path` would meet (a read-only or missing place, a
    directory in the way), before any work is done for it."""
    path = Path(path)
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
            break
    probe = path.with_name(path.name + ".tmp")
    try:
        make_directories(path.parent)
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as error:  # named by the output asked for, not by our probe
        raise type(error)(error.errno, error.strerror, str(path)) from None
