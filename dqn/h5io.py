"""Every HDF5 file the project writes or reads: layout checks (`dqn.layouts`) on write
and on read, atomic writes.

Files are written through `dqn.atomic`. Every array is stored with HDF5's Fletcher-32
checksum, so a corrupted byte is detected on read. Every file carries its `kind`, its
`format_version`, a `complete` flag and the provenance of the run (`dqn.provenance`) as
attributes; a file of an older format is read as this one (`dqn.migrate`).
"""

from __future__ import annotations

import fnmatch
import io
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dqn.atomic import atomic_write
from dqn.errors import DataFileError, FileAccessError
from dqn.layouts import FILE_ATTRS, FORMAT_VERSION, LAYOUTS, Json
from dqn.migrate import upgrade
from dqn.provenance import usable_memory, utc_now


def write(
    path: Path,
    kind: str,
    attrs: dict[str, Any],
    arrays: dict[str, np.ndarray],
    compress: bool = False,
) -> None:
    """Write `arrays` (names may contain '/' for groups) and `attrs` atomically, as a file
    of `kind`, which they must fit (`dqn.layouts`).

    The file is built in memory and written out in one piece: a full disk then fails a
    plain write, which names the file and leaves nothing behind, and never reaches
    libhdf5 (which crashed the process on ENOSPC)."""
    # `created` now: a training or evaluation process records its provenance once, at its
    # start, and writes files for hours or days after.
    attrs = {
        **attrs,
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "complete": True,
        "created": utc_now(),
    }
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    if problem := _misfit(
        kind,
        {k: _plain(v) for k, v in attrs.items()},
        {name: (a.dtype, a.shape) for name, a in arrays.items()},
    ):
        raise ValueError(f"{path}: not as dqn.layouts declares a {kind} file: {problem}")
    _store(path, attrs, arrays, {"compression": "lzf"} if compress else {})


# How `archive` stores arrays: gzip over byte-shuffled values (any HDF5 reads it), at its
# highest level, as a reference run is packed once and read many times.
ARCHIVE_FILTERS = {"compression": "gzip", "compression_opts": 9, "shuffle": True}


def archive(source: Path, out: Path, kind: str) -> None:
    """Store the `kind` file `source` at `out` (which may be `source`) with its arrays
    compressed by ARCHIVE_FILTERS and its attributes' and arrays' values unchanged (not
    migrated: a file of an older format stays one), in the form `write` gives a file:
    HDF5 1.10's, text as fixed-length UTF-8. For the files a reference run commits: what
    the repository's tree holds travels to the GPU machine, within 64 MiB (`dqn.wheels`)."""
    read(source, kind)  # the whole file checked (layout, checksums) before it is copied
    with h5py.File(source, "r") as f:
        attrs = {key: _plain(value) for key, value in f.attrs.items()}
        arrays = {name: dataset[()] for name, dataset in _contents(source, f)[0].items()}
    _store(Path(out), attrs, arrays, ARCHIVE_FILTERS)


def _store(path: Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray], filters: dict):
    """Write the file of `attrs` and `arrays` at `path` in one piece, each array of one or
    more dimensions with a checksum and `filters` (h5py's create_dataset arguments)."""
    image = io.BytesIO()
    # HDF5 1.10's format, not the earliest one h5py writes by default: its object headers,
    # heaps and chunk indexes carry checksums, so damage to them is refused by name, where
    # the earliest format's unchecked structures can send libhdf5 into an endless loop or
    # hand back altered data. Any HDF5 since 1.10 (2016) reads it.
    with h5py.File(image, "w", libver=("v110", "v110")) as f:
        for name, value in arrays.items():
            if value.ndim == 0:
                f.create_dataset(name, data=value)
            else:
                f.create_dataset(name, data=value, fletcher32=True, **filters)
        for key, value in attrs.items():
            f.attrs[key] = _fixed_length(value) if isinstance(value, str) else value

    atomic_write(path, lambda tmp: tmp.write_bytes(image.getbuffer()))


def read(path: Path, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file of `kind` written by `write` (of an older format: as this format has
    it, `dqn.migrate`); refuse it, naming the file and the item at fault, if it is not
    sound or does not fit its kind's layout (checked before any dataset is read, so a
    file that declares more than it should costs no memory)."""
    return _open_checked(path, kind, with_arrays=True)


def read_attrs(path: Path, kind: str) -> dict[str, Any]:
    """The attributes of a file written by `write`, after the same checks as `read`."""
    return _open_checked(path, kind, with_arrays=False)[0]


def _require_file(path: Path) -> None:
    """Refuse a path that is no HDF5 file: missing, a directory, or a file without HDF5's
    signature (a CSV given for an .h5, say), which a damaged HDF5 file still has."""
    try:
        if not path.is_file():
            raise DataFileError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
        signed = h5py.is_hdf5(path)
    except OSError as error:  # unreadable: no permission (no damage), an I/O error
        fault = FileAccessError if isinstance(error, PermissionError) else DataFileError
        raise fault(f"{path}: cannot be read ({error.strerror or error})") from None
    if not signed:
        raise DataFileError(f"{path}: not an HDF5 file (no HDF5 signature)")


def _open_checked(path, kind, with_arrays):
    path = Path(path)
    _require_file(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            if not isinstance(attrs.get("kind"), str) or attrs["kind"] != kind:
                raise DataFileError(
                    f"{path}: expected a file of kind {kind}, found kind={attrs.get('kind')!r}"
                )
            if attrs.get("complete") is not True:
                raise DataFileError(f"{path}: incomplete file (its writer did not finish)")
            stored, groups = _contents(path, f)
            attrs, datasets = upgrade(path, kind, attrs, stored)
            if problem := _misfit(
                kind, attrs, {n: (d.dtype, d.shape) for n, d in datasets.items()}
            ):
                raise DataFileError(f"{path}: {problem}")
            if empty := [g for g in groups if not any(n.startswith(g + "/") for n in stored)]:
                raise DataFileError(f"{path}: unexpected group {empty[0]} (it holds no dataset)")
            arrays = {}
            if with_arrays:
                need = sum(d.size * d.dtype.itemsize for d in datasets.values())
                if need > usable_memory():
                    raise FileAccessError(
                        f"{path}: its datasets hold {need / 2**30:,.1f} GiB, more "
                        "than this process may use"
                    )
                for name, dataset in datasets.items():
                    try:
                        arrays[name] = dataset[()]
                    except MemoryError:
                        raise
                    except Exception as error:  # a checksum or a compressed chunk fails
                        raise DataFileError(
                            f"{path}: corrupt or truncated HDF5 file: dataset {name} cannot "
                            f"be read ({error})"
                        ) from None
            # Every float the project stores is finite when training is sound (weights,
            # losses, Q-values, rewards): nan or inf means a diverged or damaged run.
            for name, value in arrays.items():
                if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                    raise DataFileError(
                        f"{path}: dataset {name} holds non-finite values (nan or inf)"
                    )
    # Out of memory is no damage: a resume would set a sound epoch aside for it.
    except (DataFileError, MemoryError):
        raise
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... on damage
        raise DataFileError(f"{path}: corrupt or truncated HDF5 file ({error})") from None
    return attrs, arrays


def _contents(path: Path, f: h5py.File) -> tuple[dict[str, h5py.Dataset], list[str]]:
    """The file's datasets by name, and its groups, refusing links and data kept outside
    the file: a file dqn reads is self-contained, so that reading it reads nothing else."""
    found: dict[str, h5py.Dataset] = {}
    groups = []
    for name, link in _links(f):
        if not isinstance(link, h5py.HardLink):
            raise DataFileError(f"{path}: {name} is {_link(link)}; dqn reads no links")
        node = f[name]
        if isinstance(node, h5py.Dataset):
            if node.external or node.is_virtual:
                raise DataFileError(
                    f"{path}: dataset {name} keeps its data in other files; dqn reads no links"
                )
            found[name] = node
        elif isinstance(node, h5py.Group):
            groups.append(name)
        else:
            raise DataFileError(f"{path}: {name} is a {type(node).__name__}, not a dataset")
        if node.attrs:  # dqn keeps attributes on the file only
            raise DataFileError(f"{path}: unexpected attribute {next(iter(node.attrs))} on {name}")
    return found, groups


def _links(f: h5py.File) -> list[tuple[str, Any]]:
    """Every name in the file with its link (hard, soft or external), none followed."""
    links: list[tuple[str, Any]] = []
    f.visititems_links(lambda name, link: links.append((name, link)))  # h5py garbles a raise there
    return links


def _link(link: h5py.SoftLink | h5py.ExternalLink) -> str:
    if isinstance(link, h5py.ExternalLink):
        return f"an external link to {link.filename}:{link.path}"
    return f"a soft link to {link.path}"


def _misfit(
    kind: str, attrs: dict[str, Any], arrays: dict[str, tuple[np.dtype, tuple]]
) -> str | None:
    """What in a file's attributes and (dtype, shape) of its datasets departs from the
    layout of `kind`, in words; None if nothing."""
    layout = LAYOUTS[kind]
    expected_attrs = {**FILE_ATTRS, **layout.attrs}
    for name, value in attrs.items():
        if name not in expected_attrs:
            return f"unexpected attribute {name} in a file of kind {kind}"
        if problem := _attr_misfit(value, expected_attrs[name]):
            return f"attribute {name}: {problem}"
    if missing := [name for name in expected_attrs if name not in attrs]:
        return f"attribute {missing[0]} is missing"

    lengths: dict[str, tuple[int, str]] = {}  # a named dimension: its length, where first seen
    for name, (dtype, shape) in sorted(arrays.items()):
        spec = layout.spec(name)
        if spec is None:
            return f"unexpected dataset {name} in a file of kind {kind}"
        if dtype != np.dtype(spec.dtype) or (
            spec.shape is not None
            and (
                len(shape) != len(spec.shape)
                or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, shape))
            )
        ):
            return f"dataset {name}: expected {spec.describe()}, found {dtype} of shape {shape}"
        for axis, (dim, n) in enumerate(zip(spec.shape or (), shape)):
            if isinstance(dim, str):
                seen, first = lengths.setdefault(dim, (n, name))
                if n != seen:
                    return (
                        f"dataset {name} has {n} {dim} along axis {axis}, but {first} has "
                        f"{seen}: they must agree"
                    )
    for name, spec in layout.arrays.items():
        part = next((p for p in layout.optional if name.startswith(p)), None)
        if not any(fnmatch.fnmatchcase(n, name) for n in arrays) and (
            part is None or any(n.startswith(part) for n in arrays)
        ):
            return f"dataset {name} is missing (expected {spec.describe()})"
    return None


def _attr_misfit(value: Any, expected: type | Json) -> str | None:
    if isinstance(expected, Json):
        try:
            parsed = json.loads(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return f"expected a JSON object (as a string), found {_found(value)}"
        if missing := [key for key in expected.keys if key not in parsed]:
            return f"the JSON object lacks the key {missing[0]}"
        return None
    if type(value) is not expected:  # exact: a bool is not an int, an int not a float
        return f"expected {expected.__name__}, found {_found(value)}"
    return None


def _found(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}"[:120]


def check_replaceable(path: Path, kind: str, run: Path) -> None:
    """Refuse to write `path` if a file is there that is not a `kind` file of run
    directory `run` (a command replaces only what it made itself from the same run,
    never a snapshot, an unrelated file or another run's evaluation)."""
    path = Path(path)
    if not path.exists():
        return
    try:
        with h5py.File(path, "r") as f:
            found, of_run = _plain(f.attrs.get("kind")), _plain(f.attrs.get("run"))
    except Exception:  # noqa: BLE001 - not HDF5 at all, or unreadable: not ours either
        found = of_run = None
    if found != kind:
        what = f"a {found} file" if found else "not a file dqn wrote"
        raise DataFileError(
            f"{path}: exists and is {what}; dqn replaces only a file of "
            f"kind {kind} there, so give another --out"
        )
    if not isinstance(of_run, str) or Path(of_run).resolve() != Path(run).resolve():
        raise DataFileError(
            f"{path}: exists and holds the {kind} of another run ({of_run or 'not named'}); "
            f"dqn replaces only one of {run} there, so give another --out"
        )


# `describe` shows the values of an array of up to this many (a row per snapshot of an
# evaluation, a game's returns), and the shape of a larger one.
SHOWN_VALUES = 50


def describe(path: Path) -> str:
    """A human-readable listing of a file: its attributes and its arrays."""
    path = Path(path)
    _require_file(path)
    try:
        with h5py.File(path, "r") as f:
            lines = [f"{path}"]
            for key, value in sorted(f.attrs.items()):
                value = _plain(value)
                if isinstance(value, str) and value.startswith("{"):
                    try:
                        value = json.dumps(json.loads(value), indent=2, sort_keys=True)
                    except ValueError:  # not JSON after all: shown as it is
                        pass
                    value = value.replace("\n", "\n    ")
                lines.append(f"  {key}: {value}")
            lines.append("  arrays:")
            for name, link in _links(f):  # listed, not followed
                if not isinstance(link, h5py.HardLink):
                    lines.append(f"    {name}: {_link(link)}")
                elif isinstance(node := f[name], h5py.Dataset):
                    line = f"    {name}: {node.shape} {node.dtype}"
                    if node.ndim <= 1 and node.size <= SHOWN_VALUES:  # an evaluation's rows
                        line += " = " + np.array2string(
                            node[()], separator=", ", max_line_width=1 << 20
                        )
                    lines.append(line)
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... on damage
        raise DataFileError(f"{path}: corrupt or truncated HDF5 file ({error})") from None
    return "\n".join(lines)


def _fixed_length(text: str) -> np.ndarray:
    """`text` as a fixed-length UTF-8 string, which HDF5 keeps in the attribute's own
    checksummed message; h5py's default, a variable-length string, lives in the global
    heap, which no checksum covers (a flipped byte there changed a config unnoticed)."""
    encoded = text.encode()
    return np.array(encoded, dtype=h5py.string_dtype("utf-8", max(1, len(encoded))))


def _plain(value: Any) -> Any:
    """An attribute as Python reads it: a number, a bool, or text (files written before
    `_fixed_length` hold variable-length strings, which h5py gives as str)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value
