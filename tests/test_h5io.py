import datetime
import fnmatch
import importlib.metadata
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import dqn
from dqn import atomic, h5io, layouts, migrate, presets, provenance
from dqn.errors import DataFileError, FileAccessError

from conftest import ROOT, provenance_of, write_evaluation


def _snapshot(values=None):
    """A snapshot's attributes and arrays (a network of two tensors)."""
    weights = {
        "weights/w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "weights/b": np.array([1.5, -2.0], np.float32) if values is None else values,
    }
    return {**provenance_of("Pong", 3), "epoch": 2, "step": 800, "update": 200}, weights


def test_round_trip_keeps_arrays_groups_and_provenance(tmp_path):
    path = tmp_path / "x.h5"
    attrs, arrays = _snapshot()
    h5io.write(path, "snapshot", attrs, arrays)
    attrs, got = h5io.read(path, "snapshot")
    for name, value in arrays.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == value.dtype
    assert attrs["epoch"] == 2 and attrs["game"] == "Pong" and attrs["seed"] == 3
    assert json.loads(attrs["config"]) == presets.load("ci").as_dict()
    assert {"torch", "numpy", "ale-py", "h5py", "python"} <= json.loads(
        attrs["library_versions"]
    ).keys()
    assert attrs["dqn_version"] and attrs["git_commit"] and attrs["created"]
    # the versions of this process's libraries, not merely some strings under their names
    assert json.loads(attrs["library_versions"])["torch"] == importlib.metadata.version("torch")
    assert not (tmp_path / "x.h5.tmp").exists()


def test_a_written_file_records_the_machine_that_computed_it(tmp_path, monkeypatch):
    # The bits of an update depend on the CPU's kernels: the file says which CPU, which
    # of ATen's instruction sets, how many threads, which kernel settings and device.
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    path = tmp_path / "x.h5"
    h5io.write(path, "snapshot", *_snapshot())
    machine = json.loads(h5io.read_attrs(path, "snapshot")["machine"])
    assert machine["cpu"] == provenance.cpu_model() and machine["cpu"]
    assert machine["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["torch_threads"] == torch.get_num_threads()
    assert machine["kernel_settings"]["MKL_CBWR"] == "COMPATIBLE"
    assert "ONEDNN_MAX_CPU_ISA" not in machine["kernel_settings"]
    assert machine["device"] == "cpu"


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux's /proc/cpuinfo")
def test_the_cpu_and_its_vendor_are_read_from_the_kernels_cpuinfo():
    fields = {}  # each field's first value, the first CPU's
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields.setdefault(name.strip(), value.strip())
    if "model name" in fields:  # x86's; other CPUs' kernels may name none
        assert provenance.cpu_model() == fields["model name"]
    assert provenance.cpu_vendor() == fields.get(
        "vendor_id", "unknown (no vendor_id in /proc/cpuinfo)"
    )


@pytest.mark.parametrize(
    "file, kind, attr, not_recorded, key, says",
    [
        (
            "snapshots/epoch_0020.h5",
            "snapshot",
            "machine",
            migrate.MACHINE_NOT_RECORDED,
            "cpu",
            "not recorded (written before dqn recorded the machine)",
        ),
        (
            "evaluations/epoch_0020.h5",
            "evaluation",
            "trained_by",
            migrate.TRAINED_BY_NOT_RECORDED,
            "snapshots",
            "not recorded (written before dqn recorded the code that trained them)",
        ),
    ],
)
def test_a_file_written_before_an_attribute_was_recorded_reads_so(
    file, kind, attr, not_recorded, key, says
):
    # A committed reference run's file, written before provenance recorded the machine
    # (every kind) and the code that trained the snapshots (an evaluation).
    path = ROOT / "reference-runs/breakout-paper2013" / file
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2 and attr not in f.attrs
    read = json.loads(h5io.read_attrs(path, kind)[attr])
    assert read == not_recorded and read[key] == says


def test_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "x.h5"
    h5io.write(path, "snapshot", *_snapshot())
    before = path.read_bytes()

    def half_then_full(self, data):  # the disk fills halfway through the temporary file
        with open(self, "wb") as handle:
            handle.write(bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError, match=f"No space left on device: '{path}'"):
        h5io.write(path, "snapshot", *_snapshot(np.ones(1000, np.float32)))
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == before


def test_a_write_makes_durable_each_directory_it_creates_and_the_file_s(tmp_path, monkeypatch):
    # A crash after the write must not lose the folders the file is in: each new folder's
    # entry is synced in its parent, as the file's entry is in its folder.
    synced = []
    real = atomic.fsync_directory
    monkeypatch.setattr(atomic, "fsync_directory", lambda d: synced.append(d) or real(d))
    path = tmp_path / "run" / "snapshots" / "epoch_0001.h5"
    h5io.write(path, "snapshot", *_snapshot())
    assert synced == [tmp_path, tmp_path / "run", tmp_path / "run" / "snapshots"]
    synced.clear()
    h5io.write(path.with_name("epoch_0002.h5"), "snapshot", *_snapshot())
    assert synced == [path.parent]


def test_a_writer_cannot_write_a_file_that_does_not_fit_its_layout(tmp_path):
    attrs, arrays = _snapshot()
    for bad_attrs, bad_arrays, message in [
        ({**attrs, "colour": "red"}, arrays, "unexpected attribute colour"),
        (attrs, {**arrays, "extra": np.zeros(2)}, "unexpected dataset extra"),
        (
            attrs,
            {"weights/w": np.zeros(3)},
            "dataset weights/w: expected float32 of any shape, found float64",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            h5io.write(tmp_path / "x.h5", "snapshot", bad_attrs, bad_arrays)
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_refused_by_name(tmp_path):
    path = tmp_path / "epoch_0001.h5"
    h5io.write(path, "snapshot", *_snapshot(np.random.default_rng(0).random(50_000, np.float32)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=f"{path}: corrupt or truncated"):
        h5io.read(path, "snapshot")


def test_flipped_bytes_in_an_array_are_detected_by_the_checksum(tmp_path):
    path = tmp_path / "epoch_0001.h5"
    h5io.write(path, "snapshot", *_snapshot(np.random.default_rng(0).random(50_000, np.float32)))
    with h5py.File(path, "r") as f:
        offset = f["weights/b"].id.get_offset() if f["weights/b"].chunks is None else None
        chunk = f["weights/b"].id.get_chunk_info(0)
    start = offset if offset is not None else chunk.byte_offset
    data = bytearray(path.read_bytes())
    data[start + 1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        DataFileError, match=f"{path}: corrupt or truncated HDF5 file: dataset weights/b cannot"
    ):
        h5io.read(path, "snapshot")


def test_wrong_kind_incomplete_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "a.h5"
    h5io.write(
        path, "heldout", provenance_of("Pong", 3), {"states": np.zeros((2, 4, 84, 84), np.uint8)}
    )
    with pytest.raises(
        DataFileError, match="expected a file of kind snapshot, found kind='heldout'"
    ):
        h5io.read(path, "snapshot")
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DataFileError, match="incomplete file"):
        h5io.read(path, "heldout")
    with pytest.raises(DataFileError, match="no such file"):
        h5io.read(tmp_path / "missing.h5", "heldout")
    with pytest.raises(DataFileError, match=f"{tmp_path}: not a file"):
        h5io.describe(tmp_path)  # `dqn info DIR`
    not_hdf5 = tmp_path / "b.h5"
    not_hdf5.write_text("method,Breakout\nDQN,168\n")  # a CSV given for an .h5
    for read in (h5io.describe, lambda path: h5io.read(path, "heldout")):
        with pytest.raises(DataFileError, match=f"{not_hdf5}: not an HDF5 file"):
            read(not_hdf5)
    truncated = tmp_path / "c.h5"  # its signature kept, its structures cut
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFileError, match=f"{truncated}: corrupt or truncated"):
        h5io.describe(truncated)


def _heldout_bytes(tmp_path):
    path = tmp_path / "e.h5"
    h5io.write(
        path, "heldout", provenance_of("Pong", 3), {"states": np.zeros((2, 4, 84, 84), np.uint8)}
    )
    return path.read_bytes()


# Object headers, a fractal heap and its blocks, a v2 B-tree: what `info` reads as well as
# `read` (a dataset's chunk index, a fixed array, only `read` reaches).
@pytest.mark.parametrize("structure", [b"OHDR", b"FRHP", b"FHDB", b"BTHD", b"BTLF"])
def test_a_file_whose_structures_are_damaged_is_refused_by_name(tmp_path, structure):
    # libhdf5 reports a damaged heap, B-tree or header as RuntimeError or KeyError, not
    # only OSError: `info` and every reader must still name the file.
    data = _heldout_bytes(tmp_path)
    assert structure in data  # the HDF5 signature this test breaks
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(data.replace(structure, b"XXXX"))
    for read in (h5io.describe, lambda path: h5io.read(path, "heldout")):
        with pytest.raises(DataFileError, match=f"{damaged}: corrupt or truncated HDF5 file"):
            read(damaged)


def test_a_byte_flipped_in_any_object_header_fails_its_checksum(tmp_path):
    # HDF5 1.10's format checksums its metadata; the earliest format (h5py's default) has
    # no OHDR headers and no checksums.
    data = _heldout_bytes(tmp_path)
    headers = [match.start() for match in re.finditer(b"OHDR", data)]
    assert len(headers) == 2  # the root group's and the dataset's
    damaged = tmp_path / "damaged.h5"
    for header in headers:
        flipped = bytearray(data)
        flipped[header + 20] ^= 0xFF
        damaged.write_bytes(flipped)
        with pytest.raises(DataFileError, match=f"{damaged}: corrupt .* checksum"):
            h5io.read(damaged, "heldout")


def _data_bytes(path: Path) -> set[int]:
    """The offsets of `path`'s bytes that hold its datasets' values (Fletcher-32's part)."""
    offsets = set()

    def add(name, node):
        if not isinstance(node, h5py.Dataset):
            return
        if node.chunks:
            chunks = map(node.id.get_chunk_info, range(node.id.get_num_chunks()))
            places = [(chunk.byte_offset, chunk.size) for chunk in chunks]
        else:  # contiguous; a compact one (no offset) lies in its header, checksummed
            places = [(node.id.get_offset(), node.id.get_storage_size())]
        for start, size in places:
            if start is not None:
                offsets.update(range(start, start + size))

    with h5py.File(path) as f:
        f.visititems(add)
    return offsets


def _flip_each_metadata_byte(path: Path, kind: str, progress: Path, found) -> None:
    """Flip each byte of `path` but its datasets' values in turn, and put into `found` the
    offsets where reading neither refused the file by name nor gave back what was written.
    Each offset goes to `progress` first: its last names a flip that hung libhdf5."""
    data, data_bytes = path.read_bytes(), _data_bytes(path)
    written = h5io.read(path, kind)
    flipped_path, problems = path.with_name("flipped.h5"), []
    with open(progress, "w") as log:
        for offset in (o for o in range(len(data)) if o not in data_bytes):
            print(offset, file=log, flush=True)
            flipped = bytearray(data)
            flipped[offset] ^= 0xFF
            flipped_path.write_bytes(flipped)
            try:
                attrs, arrays = h5io.read(flipped_path, kind)
                h5io.describe(flipped_path)
            except DataFileError:
                continue
            except Exception as error:  # what this test looks for: not a named refusal
                problems.append((offset, type(error).__name__))
                continue
            if attrs != written[0] or any(
                not np.array_equal(arrays[name], value) for name, value in written[1].items()
            ):
                problems.append((offset, "read back altered"))
    found.put(problems)


@pytest.mark.slow  # 8,000 reads
def test_every_metadata_byte_flipped_is_refused_by_name_or_reads_back_unchanged(tmp_path):
    # HDF5 1.10's format with fixed-length strings (h5io.write): every structure holds a
    # checksum. In the earliest format with h5py's variable-length strings, flips in the
    # global heap hung libhdf5, and flips in the chunk index or in the heap of strings
    # changed states or a config unnoticed.
    path = write_evaluation(tmp_path / "e.h5", "Pong", 0, [-21, -15], [0.1, 0.2])
    context = multiprocessing.get_context("fork")  # its own process: a hang can be ended
    found, progress = context.Queue(), tmp_path / "progress"
    worker = context.Process(
        target=_flip_each_metadata_byte, args=(path, "evaluation", progress, found)
    )
    worker.start()
    worker.join(timeout=600)
    hung = worker.is_alive()
    worker.kill()
    assert not hung, f"libhdf5 hung on the byte at {progress.read_text().split()[-1]} flipped"
    assert found.get(timeout=10) == []


def _example(kind):
    """A file of `kind` that fits its layout, made from the layout: a named dimension is
    2 long, any other free one 3; a pattern's '*' becomes 'x'."""
    layout = layouts.LAYOUTS[kind]
    values = {str: "text", int: 1, float: 0.5, bool: True}
    attrs = {
        name: json.dumps(dict.fromkeys(kind_of.keys, 0))
        if isinstance(kind_of, layouts.Json)
        else values[kind_of]
        for name, kind_of in layout.attrs.items()
    }
    arrays = {
        name.replace("*", "x"): np.zeros(
            [
                d if isinstance(d, int) else 2 if isinstance(d, str) else 3
                for d in spec.shape or (3,)
            ],
            spec.dtype,
        )
        for name, spec in layout.arrays.items()
    }
    return attrs, arrays


def _link_to_elsewhere(f, name, other):
    del f[name]
    f[name] = h5py.ExternalLink(str(other), "/data")


# Each: what is done to a fitting file (open for writing), and what the error then says.
MALFORMED = {
    "missing dataset": (lambda f, name, other: f.__delitem__(name), "dataset {listed} is missing"),
    "extra dataset": (
        lambda f, name, other: f.create_dataset("zzz", data=np.zeros(1 << 12), compression="gzip"),
        "unexpected dataset zzz",
    ),
    "mis-shaped dataset": (
        lambda f, name, other: (
            f.__delitem__(name),
            f.create_dataset(name, data=np.zeros((5, 5, 5, 5, 5), f"<{'u1'}")),
        ),
        "dataset {name}: expected",
    ),
    "mis-typed dataset": (
        lambda f, name, other: (
            shape := f[name].shape,
            f.__delitem__(name),
            f.create_dataset(name, shape, "S3"),
        ),
        "dataset {name}: expected",
    ),
    "missing attribute": (
        lambda f, name, other: f.attrs.__delitem__("seed"),
        "attribute seed is missing",
    ),
    "extra attribute": (
        lambda f, name, other: f.attrs.__setitem__("colour", "red"),
        "unexpected attribute colour",
    ),
    "mis-typed attribute": (
        lambda f, name, other: f.attrs.__setitem__("seed", "three"),
        "attribute seed: expected int, found str 'three'",
    ),
    "attribute not JSON": (
        lambda f, name, other: f.attrs.__setitem__("config", "[1, 2"),
        "attribute config: expected a JSON object",
    ),
    "soft link": (
        lambda f, name, other: (f.__delitem__(name), f.__setitem__(name, h5py.SoftLink("/x"))),
        "{name} is a soft link to /x; dqn reads no links",
    ),
    "external link": (
        lambda f, name, other: _link_to_elsewhere(f, name, other),
        "{name} is an external link to {other}:/data; dqn reads no links",
    ),
    "external storage": (
        lambda f, name, other: (
            f.__delitem__(name),
            f.create_dataset(name, (3,), "uint8", external=[(str(other), 0, 3)]),
        ),
        "dataset {name} keeps its data in other files",
    ),
}


@pytest.mark.parametrize("kind", sorted(layouts.LAYOUTS))
def test_a_file_that_does_not_fit_its_layout_is_refused_naming_the_file_and_the_item(
    tmp_path, kind
):
    attrs, arrays = _example(kind)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros(3)
    for case, (mutate, message) in MALFORMED.items():
        path = tmp_path / f"{case}.h5"
        h5io.write(path, kind, attrs, arrays)
        assert h5io.read(path, kind)[0]["kind"] == kind  # the example fits
        layout = layouts.LAYOUTS[kind]
        name = next((n for n in sorted(arrays) if not n.startswith(layout.optional)), None)
        if name is None and "{" in message:
            continue  # a kind without datasets: nothing to break there
        listed = name and next(p for p in layout.arrays if fnmatch.fnmatchcase(name, p))
        with h5py.File(path, "a") as f:
            mutate(f, name, other)
        for read in (h5io.read, h5io.read_attrs):
            with pytest.raises(DataFileError) as refused:
                read(path, kind)
            assert str(refused.value).startswith(f"{path}: "), case
            assert message.format(name=name, listed=listed, other=other) in str(refused.value), (
                case,
                str(refused.value),
            )


def test_a_named_length_must_agree_across_a_files_datasets(tmp_path):
    path = tmp_path / "e.h5"
    attrs, arrays = _example("evaluation")
    arrays["average_max_q"] = np.zeros(5)
    with pytest.raises(
        ValueError,
        match="dataset average_reward has 2 snapshots along axis 0, "
        "but average_max_q has 5: they must agree",
    ):
        h5io.write(path, "evaluation", attrs, arrays)


def test_only_the_emulator_state_is_optional_and_a_resume_state_holds_the_log(tmp_path):
    attrs, arrays = _example("resume_state")
    catch = {name: a for name, a in arrays.items() if name != "env/ale"}  # no emulator
    h5io.write(tmp_path / "catch.h5", "resume_state", attrs, catch)
    without_log = {name: a for name, a in arrays.items() if not name.startswith("log/")}
    with pytest.raises(ValueError, match="dataset log/episodes/return is missing"):
        h5io.write(tmp_path / "old.h5", "resume_state", attrs, without_log)


def _as_format_1(path, kind, state_log=True):
    """Rewrite a format-2 file of `kind` as format 1 wrote it: older config keys, no
    machine, the old names of the player's counters, an interrupt file's old parts (and
    its log twice; once, outside its state, if not `state_log`: format 1's first weeks)."""
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 1
        del f.attrs["machine"]
        config = json.loads(f.attrs["config"])
        for key, value in migrate.ADDED_KEYS.items():
            if config[key] == value:
                del config[key]  # before the key, every run had this value
        config["target_update_period_updates"] = config.pop("target_update_period_steps") // 4
        f.attrs["config"] = json.dumps(config)
        if "counters" in f.attrs:
            counters = json.loads(f.attrs["counters"])
            counters["episode"] = 3  # finished episodes, which format 2 does not keep
            counters["next_is_episode_start"] = counters.pop("starts_episode")
            f.attrs["counters"] = json.dumps(counters)
        if kind == "interrupted":
            f.move("replay_delta", "delta")
            f.move("resume_state", "state")
            (f.copy if state_log else f.move)("state/log", "log")


@pytest.mark.parametrize(
    "kind, state_log",
    [("heldout", True), ("resume_state", True), ("interrupted", True), ("interrupted", False)],
)
def test_a_format_1_file_reads_as_format_2(tmp_path, kind, state_log):
    attrs, arrays = _example(kind)
    config = presets.NATURE2015.with_values(update_period_steps=4).as_dict()
    attrs["config"] = json.dumps(config, sort_keys=True)
    counters = {
        "epoch": 1,
        "step": 2,
        "episode_return": 1.5,
        "episode_steps": 4,
        "starts_episode": True,
    }
    if "counters" in attrs:
        attrs["counters"] = json.dumps(counters)
    path = tmp_path / "f.h5"
    h5io.write(path, kind, attrs, arrays)
    expected = h5io.read(path, kind)
    _as_format_1(path, kind, state_log)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1 and "optimizer" not in f.attrs["config"]
    got_attrs, got_arrays = h5io.read(path, kind)
    assert got_attrs["format_version"] == h5io.FORMAT_VERSION == 2
    assert json.loads(got_attrs["config"]) == config
    assert _parsed(got_attrs) == {**_parsed(expected[0]), "machine": migrate.MACHINE_NOT_RECORDED}
    assert sorted(got_arrays) == sorted(expected[1])
    for name, value in expected[1].items():
        np.testing.assert_array_equal(got_arrays[name], value, err_msg=name)
    assert h5io.read_attrs(path, kind) == got_attrs


def _parsed(attrs):
    return {
        k: json.loads(v) if k in ("config", "counters", "machine") else v for k, v in attrs.items()
    }


def assert_read_without(tmp_path, key, config, read_as, **attrs_changed):
    """A held-out file whose stored `config` lacks `key` (its other attributes changed as
    given) reads with `key` = `read_as`, a whole config again; and so does format 1's,
    whose configs lack it too."""
    attrs, arrays = _example("heldout")
    config = {k: v for k, v in config.items() if k != key}
    attrs.update(config=json.dumps(config), **attrs_changed)
    path = tmp_path / "f.h5"
    h5io.write(path, "heldout", attrs, arrays)
    got = json.loads(h5io.read(path, "heldout")[0]["config"])
    assert got == {**config, key: read_as}
    assert json.loads(h5io.read_attrs(path, "heldout")["config"]) == got
    presets.Config(**got)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 1
    assert json.loads(h5io.read(path, "heldout")[0]["config"]) == got


@pytest.mark.parametrize("preset", ["paper2013", "nature2015"])
@pytest.mark.parametrize(
    "key,played",
    [
        ("resize", "bilinear"),  # nature2015 shrinks by area averaging since
        ("terminal_takes_step", False),  # nature2015 counts DQN 3.0's terminal step since
    ],
)
def test_a_config_stored_before_a_key_came_reads_as_its_run_played(tmp_path, preset, key, played):
    # A run begun before the key came reads as the run it is, whatever its preset's value
    # now, and is told from the preset's runs.
    assert_read_without(tmp_path, key, presets.PRESETS[preset].as_dict(), played, preset=preset)


@pytest.mark.parametrize(
    "preset,game,read_as",
    [
        # the run played ale-py's set; where Xitari's is the same, its preset's value
        ("nature2015", "Breakout", "xitari"),
        ("paper2013", "Breakout", "ale_py"),
        ("nature2015", "Pong", "ale_py"),  # six actions, not DQN 3.0's three
        ("paper2013", "Pong", "ale_py"),
        ("no such preset", "Breakout", "ale_py"),
    ],
)
def test_a_config_stored_before_action_set_reads_as_its_run_played(tmp_path, preset, game, read_as):
    config = presets.PRESETS.get(preset, presets.PAPER2013).as_dict()
    assert_read_without(tmp_path, "action_set", config, read_as, preset=preset, game=game)


@pytest.mark.parametrize(
    "preset,overrides,read_as",
    [
        # the run counted its epochs in updates; where its replay start is a whole number
        # of epochs, counting in steps ends the same ones: its preset's value
        ("nature2015", {"epoch_updates": 12_500}, "steps"),  # 50k replay start, 50k steps
        ("nature2015", {"epoch_updates": 25_000}, "updates"),  # 100k steps: 150k, not 100k
        ("nature2015", {}, "updates"),  # 62,500 updates: 300k, 550k, ... not 250k, 500k
        ("paper2013", {"epoch_updates": 100}, "updates"),  # the same epochs, but its preset's
        ("no such preset", {"epoch_updates": 12_500}, "updates"),
    ],
)
def test_a_config_stored_before_epoch_counted_in_reads_as_its_run_played(
    tmp_path, preset, overrides, read_as
):
    config = {**presets.PRESETS.get(preset, presets.NATURE2015).as_dict(), **overrides}
    assert_read_without(tmp_path, "epoch_counted_in", config, read_as, preset=preset)


@pytest.mark.parametrize("version", [0, 3, "1"])
def test_a_file_of_another_format_is_refused_in_one_line_naming_its_version(tmp_path, version):
    path = tmp_path / "f.h5"
    h5io.write(path, "snapshot", *_snapshot())
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = version
    with pytest.raises(
        DataFileError,
        match=rf"^{path}: format version {version!r}, which this dqn "
        r"does not read \(it reads 2 and 1\)$",
    ):
        h5io.read(path, "snapshot")


def test_a_file_declaring_more_data_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "h.h5"
    h5io.write(path, "heldout", *_example("heldout"))
    monkeypatch.setattr(h5io, "usable_memory", lambda: 1000)  # the states hold 56448 bytes
    # not damage (a resume sets nothing aside for it): dqn.errors.FileAccessError
    with pytest.raises(FileAccessError, match=f"{path}: its datasets hold .* GiB, more than"):
        h5io.read(path, "heldout")
    assert h5io.read_attrs(path, "heldout")["kind"] == "heldout"  # attributes read no data


def test_running_out_of_memory_while_reading_is_no_damage(tmp_path, monkeypatch):
    # A resume sets aside the epoch whose files it cannot read as damaged: memory that
    # runs out while one is read must not be taken for that.
    path = tmp_path / "h.h5"
    h5io.write(path, "heldout", *_example("heldout"))

    def out_of_memory(dataset, key):
        raise MemoryError("Unable to allocate 7.0 GiB")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", out_of_memory)
    with pytest.raises(MemoryError):
        h5io.read(path, "heldout")


def _copy_the_package_into(directory):
    shutil.copytree(
        Path(dqn.__file__).parent, directory / "dqn", ignore=shutil.ignore_patterns("__pycache__")
    )


def _commit_seen_from(directory, env):
    """provenance.git_commit() as a process running the package copied into `directory`
    (with the environment `env`) computes it."""
    return subprocess.run(
        [sys.executable, "-c", "from dqn.provenance import git_commit; print(git_commit())"],
        cwd=directory,
        text=True,
        capture_output=True,
        check=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(directory)},
    ).stdout.strip()


def test_outside_a_git_checkout_the_commit_comes_from_the_image_or_is_unknown(tmp_path):
    # As in the container image, which holds the package but no .git.
    _copy_the_package_into(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "DQN_IMAGE_GIT_COMMIT"}
    commits = [
        _commit_seen_from(tmp_path, {**env, **extra})
        for extra in ({"DQN_IMAGE_GIT_COMMIT": "0123abc"}, {})
    ]
    assert commits == [
        "unknown (not run from a git checkout; the container image was built from 0123abc)",
        "unknown (not run from a git checkout)",
    ]


def _git(directory, *args):
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(directory), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


@pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="not a git checkout (the container image holds none)"
)
def test_a_file_records_the_commit_of_the_checkout_the_package_runs_from(tmp_path):
    path = tmp_path / "x.h5"
    h5io.write(path, "snapshot", *_snapshot())
    commit = h5io.read_attrs(path, "snapshot")["git_commit"]
    # "-dirty" where dqn/ has changes (this checkout may have them while tests are written)
    assert commit.removesuffix("-dirty") == _git(Path(dqn.__file__).parent, "rev-parse", "HEAD")


@pytest.mark.skipif(shutil.which("git") is None, reason="no git program to make a repository")
def test_the_commit_is_dirty_when_the_package_has_changes_and_only_then(tmp_path):
    # A repository of its own holding a copy of the package: its HEAD, then a change
    # outside dqn/ (not the code that computes), then one inside it.
    _copy_the_package_into(tmp_path)
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    (tmp_path / "notes.txt").write_text("a\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    head = _git(tmp_path, "rev-parse", "HEAD")

    def commit():
        return _commit_seen_from(tmp_path, os.environ)

    assert commit() == head
    (tmp_path / "notes.txt").write_text("b\n")
    assert commit() == head
    with open(tmp_path / "dqn" / "presets.py", "a") as file:
        file.write("\n# a change\n")
    assert commit() == head + "-dirty"


@pytest.mark.skipif(shutil.which("git") is None, reason="no git program to make a repository")
def test_a_copy_of_the_package_in_an_ignored_folder_of_a_checkout_names_no_commit(tmp_path):
    # As a non-editable install into a virtual environment inside the checkout, or a
    # build/ folder: git answers for the checkout around it, whose commit is not this
    # code's (a change to the copy showed no -dirty either).
    (tmp_path / ".gitignore").write_text("build/\n__pycache__/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    _copy_the_package_into(tmp_path / "build")
    with open(tmp_path / "build" / "dqn" / "presets.py", "a") as file:
        file.write("\n# a change\n")
    env = {k: v for k, v in os.environ.items() if k != "DQN_IMAGE_GIT_COMMIT"}
    package = (tmp_path / "build" / "dqn").resolve()
    assert _commit_seen_from(tmp_path / "build", env) == (
        f"unknown ({package} is not tracked by the git checkout it lies in)"
    )
    # and where there is no git to ask, it says so
    no_git = {**env, "PATH": str(tmp_path / "no-such-bin")}
    assert _commit_seen_from(tmp_path / "build", no_git) == "unknown (no git program to ask)"


def test_a_file_is_dated_when_it_is_written_not_when_its_provenance_was_recorded(tmp_path):
    # A training process records its provenance at its start and writes snapshots for
    # days after: each file's `created` is its own.
    attrs, arrays = _snapshot()
    attrs["created"] = "2000-01-01T00:00:00+00:00"  # recorded long ago
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    h5io.write(tmp_path / "s.h5", "snapshot", attrs, arrays)
    created = datetime.datetime.fromisoformat(
        h5io.read_attrs(tmp_path / "s.h5", "snapshot")["created"]
    )
    assert before <= created <= datetime.datetime.now(datetime.UTC)


def test_describe_lists_links_without_following_them(tmp_path):
    path = tmp_path / "s.h5"
    h5io.write(path, "snapshot", *_snapshot())
    with h5py.File(path, "a") as f:
        f["weights/soft"] = h5py.SoftLink("/weights/w")
        f["weights/far"] = h5py.ExternalLink(str(tmp_path / "absent.h5"), "/data")
    listing = h5io.describe(path)
    assert "weights/soft: a soft link to /weights/w" in listing
    assert f"weights/far: an external link to {tmp_path / 'absent.h5'}:/data" in listing
    assert "weights/w: (3, 4) float32" in listing


def test_describe_shows_the_values_of_small_arrays_and_the_shape_of_large_ones(tmp_path):
    shown = h5io.SHOWN_VALUES
    path = write_evaluation(
        tmp_path / "e.h5", "Pong", 0, [-21.0, -19.5], [0.25, 0.5], episodes=[1, shown - 1]
    )
    listing = h5io.describe(path).splitlines()
    assert "    average_reward: (2,) float64 = [-21. , -19.5]" in listing
    assert "    epoch: (2,) int64 = [1, 2]" in listing
    # as many values as are shown, on the array's own line
    (returns,) = [line for line in listing if line.startswith("    episode_returns:")]
    assert returns.startswith(f"    episode_returns: ({shown},) float64 = [-21. , -19.5, ")
    assert returns.count(",") == shown and returns.endswith("]")
    more = write_evaluation(tmp_path / "m.h5", "Pong", 0, [-21.0], [0.25], episodes=shown + 1)
    assert f"    episode_returns: ({shown + 1},) float64" in h5io.describe(more).splitlines()


@pytest.mark.parametrize(
    "error, fault",
    # An I/O error may be damage (a resume sets the epoch aside); a refused permission is
    # none (dqn.errors.FileAccessError: a resume stops).
    [
        (OSError(5, "Input/output error"), DataFileError),
        (PermissionError(13, "Permission denied"), FileAccessError),
    ],
)
def test_an_unreadable_file_is_refused_by_name(tmp_path, monkeypatch, error, fault):
    path = write_evaluation(tmp_path / "e.h5", "Pong", 0, [-21.0], [0.25])

    def unreadable(name):
        raise error

    monkeypatch.setattr(h5io.h5py, "is_hdf5", unreadable)
    for read in (h5io.describe, lambda path: h5io.read(path, "evaluation")):
        with pytest.raises(
            DataFileError, match=f"{path}: cannot be read \\({error.strerror}\\)"
        ) as raised:
            read(path)
        assert type(raised.value) is fault


def test_a_json_attribute_must_hold_the_keys_its_reader_needs(tmp_path):
    attrs, arrays = _example("interrupted")
    meter = json.loads(attrs["meter"])
    del meter["losses"]
    with pytest.raises(ValueError, match="attribute meter: the JSON object lacks the key losses"):
        h5io.write(tmp_path / "i.h5", "interrupted", {**attrs, "meter": json.dumps(meter)}, arrays)


def test_an_empty_group_or_an_attribute_on_a_dataset_is_refused(tmp_path):
    for case, change, message in [
        (
            "group",
            lambda f: f.create_group("notes"),
            "unexpected group notes (it holds no dataset)",
        ),
        (
            "attribute",
            lambda f: f["weights/w"].attrs.__setitem__("unit", "m"),
            "unexpected attribute unit on weights/w",
        ),
        ("kind", lambda f: f.attrs.__setitem__("kind", [1, 2]), "expected a file of kind snapshot"),
    ]:
        path = tmp_path / f"{case}.h5"
        h5io.write(path, "snapshot", *_snapshot())
        with h5py.File(path, "a") as f:
            change(f)
        with pytest.raises(DataFileError, match=re.escape(f"{path}: {message}")):
            h5io.read(path, "snapshot")


def test_describe_shows_an_attribute_that_only_looks_like_json(tmp_path):
    path = tmp_path / "s.h5"
    h5io.write(path, "snapshot", *_snapshot())
    with h5py.File(path, "a") as f:
        f.attrs["note"] = "{not json"
    assert "note: {not json" in h5io.describe(path)


@pytest.mark.parametrize(
    "cgroup,files,limit",
    [
        # cgroup v2 (a SLURM job's --mem=12502M), the group's own file
        ("0::/system.slice/job_7\n", {"system.slice/job_7/memory.max": "13109297152"}, 13109297152),
        # v2 inside a container's namespace: the group reads "/", the file is the root's
        ("0::/\n", {"memory.max": "2147483648"}, 2147483648),
        ("0::/\n", {"memory.max": "max"}, None),  # no limit
        # v1, and hybrid (v1 controllers and v2 beside them, as on this project's machine)
        ("4:memory:/job_7\n", {"memory/job_7/memory.limit_in_bytes": "1073741824"}, 1073741824),
        ("4:memory:/x\n0::/\n", {"memory/x/memory.limit_in_bytes": "9223372036854771712"}, None),
        ("4:memory:/x\n0::/y\n", {"unified/y/memory.max": "3221225472"}, 3221225472),
        ("1:cpu:/\n", {}, None),  # no memory controller
        # SLURM on v2: the limit on the job's group, none on the task's below it
        (
            "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n",
            {
                "system.slice/slurmstepd.scope/job_7/memory.max": "13109297152",
                "system.slice/slurmstepd.scope/job_7/step_0/user/task_0/memory.max": "max",
            },
            13109297152,
        ),
    ],
)
def test_usable_memory_is_the_control_groups_limit_where_it_is_below_the_machines(
    tmp_path, cgroup, files, limit
):
    (tmp_path / "cgroup").write_text(cgroup)
    for name, value in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(value + "\n")
    usable = provenance.usable_memory(tmp_path / "cgroup", tmp_path / "fs")
    assert usable == min(limit or provenance.physical_memory(), provenance.physical_memory())
    assert provenance.usable_memory(tmp_path / "none", tmp_path / "fs") == (
        provenance.physical_memory()
    )
