"""Every HDF5 file the project writes or reads: layout checks, provenance, atomic writes.

A file is written under `<name>.tmp`, flushed, fsynced and renamed into place, so a
killed process never leaves a half-written file under its final name. Every array is
stored with HDF5's Fletcher-32 checksum, so a corrupted byte is detected on read. Every
file carries its `kind`, a `complete` flag and the provenance of the run (package
version and git commit, game, seed, preset, the full resolved config, library
versions, creation time) as attributes.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

import dqn
from dqn.errors import DataFileError

FORMAT_VERSION = 1
LIBRARIES = ("numpy", "torch", "ale-py", "gymnasium", "h5py", "opencv-python-headless")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout the package runs from, '-dirty' if it has changes."""
    here = Path(__file__).resolve().parent
    # safe.directory: a checkout mounted into a container belongs to another user there,
    # and git would refuse to read it.
    git = ["git", "-c", "safe.directory=*", "-C", str(here)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # The project's image holds no .git but records the commit it was built from
        # (container/Dockerfile). Only a hint: this code need not be that image's.
        if image_commit := os.environ.get("DQN_IMAGE_GIT_COMMIT"):
            return f"unknown (not run from a git checkout; the container image was built from {image_commit})"
        return "unknown (not run from a git checkout)"
    return commit + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(game: str, seed: int, preset: str, config: dict) -> dict[str, Any]:
    return {
        "dqn_version": dqn.__version__,
        "git_commit": git_commit(),
        "game": game,
        "seed": seed,
        "preset": preset,
        "config": json.dumps(config, sort_keys=True),
        "library_versions": json.dumps(library_versions(), sort_keys=True),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write `path` through `write(temporary path)`, fsync it and rename it into place,
    so a killed process never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write(path: Path, kind: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray],
          compress: bool = False) -> None:
    """Write `arrays` (names may contain '/' for groups) and `attrs` atomically."""

    def fill(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for name, value in arrays.items():
                value = np.asarray(value)
                if value.ndim == 0:
                    f.create_dataset(name, data=value)
                else:
                    f.create_dataset(name, data=value, fletcher32=True,
                                     compression="lzf" if compress else None)
            for key, value in attrs.items():
                f.attrs[key] = value
            f.attrs["kind"] = kind
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["complete"] = True

    atomic_write(path, fill)


def read(path: Path, kind: str, required: tuple[str, ...] = ()
         ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a whole file written by `write`; refuse, naming the file, if it is not sound."""
    return _open_checked(path, kind, required, with_arrays=True)


def read_attrs(path: Path, kind: str) -> dict[str, Any]:
    """The attributes of a file written by `write`, after the same checks as `read`."""
    return _open_checked(path, kind, (), with_arrays=False)[0]


def _open_checked(path, kind, required, with_arrays):
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            if attrs.get("kind") != kind:
                raise DataFileError(
                    f"{path}: expected a {kind} file, found kind={attrs.get('kind')!r}")
            if attrs.get("format_version", 0) > FORMAT_VERSION:
                raise DataFileError(f"{path}: format version {attrs['format_version']} is "
                                    f"newer than this dqn reads ({FORMAT_VERSION})")
            if not attrs.get("complete"):
                raise DataFileError(f"{path}: incomplete file (its writer did not finish)")
            missing = [name for name in required if name not in f]
            if missing:
                raise DataFileError(f"{path}: {kind} file lacks {', '.join(missing)}")
            arrays = {}
            if with_arrays:
                f.visititems(lambda name, node: arrays.__setitem__(name, node[()])
                             if isinstance(node, h5py.Dataset) else None)
    except DataFileError:
        raise
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... on damage
        raise DataFileError(f"{path}: corrupt or truncated HDF5 file ({error})") from None
    return attrs, arrays


def describe(path: Path) -> str:
    """A human-readable listing of a file: its attributes and its arrays."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            lines = [f"{path}"]
            for key, value in sorted(f.attrs.items()):
                value = _plain(value)
                if isinstance(value, str) and value.startswith("{"):
                    value = json.dumps(json.loads(value), indent=2, sort_keys=True)
                    value = value.replace("\n", "\n    ")
                lines.append(f"  {key}: {value}")
            lines.append("  arrays:")
            f.visititems(lambda name, node: lines.append(
                f"    {name}: {node.shape} {node.dtype}") if isinstance(node, h5py.Dataset) else None)
    except OSError as error:
        raise DataFileError(f"{path}: corrupt or truncated HDF5 file ({error})") from None
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value
