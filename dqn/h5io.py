"""Every HDF5 file the project writes or reads: layout checks on read, atomic writes.

Files are written through `dqn.atomic`. Every array is stored with HDF5's Fletcher-32
checksum, so a corrupted byte is detected on read. Every file carries its `kind`, a
`complete` flag and the provenance of the run (`dqn.provenance`) as attributes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dqn.atomic import atomic_write
from dqn.errors import DataFileError

FORMAT_VERSION = 1
# The columns of an evaluation file (`dqn evaluate`): one row per snapshot.
EVALUATION_COLUMNS = ("epoch", "step", "update", "average_reward", "best_episode_reward",
                      "episodes", "average_max_q")


def write(path: Path, kind: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray],
          compress: bool = False) -> None:
    """Write `arrays` (names may contain '/' for groups) and `attrs` atomically.

    The file is built in memory and written out in one piece: a full disk then fails a
    plain write, which names the file and leaves nothing behind, and never reaches
    libhdf5 (which crashed the process on ENOSPC)."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
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

    atomic_write(path, lambda tmp: tmp.write_bytes(image.getbuffer()))


def read(path: Path, kind: str, required: tuple[str, ...] = (), rows: tuple[str, ...] = ()
         ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a whole file written by `write`; refuse, naming the file, if it is not sound.

    `rows`: datasets that are the columns of one table, so hold one row each along their
    first axis (the first of them sets the count)."""
    attrs, arrays = _open_checked(path, kind, tuple(required) + tuple(rows), with_arrays=True)
    lengths = {name: np.shape(arrays[name])[0] if np.ndim(arrays[name]) else None for name in rows}
    if rows and (wrong := [name for name in rows if lengths[name] != lengths[rows[0]]]):
        raise DataFileError(f"{path}: dataset {wrong[0]} has {lengths[wrong[0]]} rows, "
                            f"expected {lengths[rows[0]]} as {rows[0]} has")
    return attrs, arrays


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
            # Every float the project stores is finite when training is sound (weights,
            # losses, Q-values, rewards): nan or inf means a diverged or damaged run.
            for name, value in arrays.items():
                if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(value).all():
                    raise DataFileError(f"{path}: dataset {name} holds non-finite values "
                                        "(nan or inf)")
    except DataFileError:
        raise
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... on damage
        raise DataFileError(f"{path}: corrupt or truncated HDF5 file ({error})") from None
    return attrs, arrays


def check_replaceable(path: Path, kind: str) -> None:
    """Refuse to write `path` if a file is there that is not a `kind` file (a command
    replaces only what it made itself, never a snapshot or an unrelated file)."""
    path = Path(path)
    if not path.exists():
        return
    try:
        with h5py.File(path, "r") as f:
            found = _plain(f.attrs.get("kind"))
    except Exception:  # noqa: BLE001 - not HDF5 at all, or unreadable: not ours either
        found = None
    if found != kind:
        what = f"a {found} file" if found else "not a file dqn wrote"
        raise DataFileError(f"{path}: exists and is {what}; dqn replaces only a file of "
                            f"kind {kind} there, so give another --out")


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
