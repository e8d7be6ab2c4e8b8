"""Every HDF5 file the project writes or reads: layout checks on read, atomic writes.

Files are written through `dqn.atomic`. Every array is stored with HDF5's Fletcher-32
checksum, so a corrupted byte is detected on read. Every file carries its `kind`, a
`complete` flag and the provenance of the run (`dqn.provenance`) as attributes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dqn.atomic import atomic_write
from dqn.errors import DataFileError

FORMAT_VERSION = 1


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
