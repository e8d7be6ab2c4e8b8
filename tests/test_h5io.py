import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import dqn
from dqn import h5io, presets, provenance
from dqn.errors import DataFileError


def _attrs():
    return provenance.record("Pong", 3, "ci", presets.load("ci").as_dict())


def test_round_trip_keeps_arrays_groups_and_provenance(tmp_path):
    path = tmp_path / "x.h5"
    arrays = {"weights/a": np.arange(12, dtype=np.float32).reshape(3, 4),
              "weights/b": np.array([1.5]), "scalar": np.int64(7)}
    h5io.write(path, "snapshot", {**_attrs(), "epoch": 2}, arrays)
    attrs, got = h5io.read(path, "snapshot", ("weights/a",))
    for name, value in arrays.items():
        np.testing.assert_array_equal(got[name], value)
    assert attrs["epoch"] == 2 and attrs["game"] == "Pong" and attrs["seed"] == 3
    assert json.loads(attrs["config"]) == presets.load("ci").as_dict()
    assert {"torch", "numpy", "ale-py", "h5py", "python"} <= json.loads(attrs["library_versions"]).keys()
    assert attrs["dqn_version"] and attrs["git_commit"] and attrs["created"]
    assert not (tmp_path / "x.h5.tmp").exists()


def test_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    path = tmp_path / "x.h5"

    class Boom:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        h5io.write(path, "snapshot", _attrs(), {"a": np.zeros(3), "b": Boom()})
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_refused_by_name(tmp_path):
    path = tmp_path / "epoch_0001.h5"
    h5io.write(path, "snapshot", _attrs(), {"a": np.random.default_rng(0).random(50_000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=f"{path}: corrupt or truncated"):
        h5io.read(path, "snapshot")


def test_flipped_bytes_in_an_array_are_detected_by_the_checksum(tmp_path):
    path = tmp_path / "epoch_0001.h5"
    values = np.random.default_rng(0).random(50_000)
    h5io.write(path, "snapshot", _attrs(), {"a": values})
    with h5py.File(path, "r") as f:
        offset = f["a"].id.get_offset() if f["a"].chunks is None else None
        chunk = f["a"].id.get_chunk_info(0)
    start = offset if offset is not None else chunk.byte_offset
    data = bytearray(path.read_bytes())
    data[start + 1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=f"{path}: corrupt or truncated"):
        h5io.read(path, "snapshot")


def test_wrong_kind_incomplete_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "a.h5"
    h5io.write(path, "heldout", _attrs(), {"states": np.zeros((2, 4, 84, 84), np.uint8)})
    with pytest.raises(DataFileError, match="expected a snapshot file, found kind='heldout'"):
        h5io.read(path, "snapshot")
    with pytest.raises(DataFileError, match="heldout file lacks weights"):
        h5io.read(path, "heldout", ("weights",))
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DataFileError, match="incomplete file"):
        h5io.read(path, "heldout")
    with pytest.raises(DataFileError, match="no such file"):
        h5io.read(tmp_path / "missing.h5", "heldout")
    not_hdf5 = tmp_path / "b.h5"
    not_hdf5.write_text("hello")
    with pytest.raises(DataFileError, match=f"{not_hdf5}: corrupt or truncated"):
        h5io.describe(not_hdf5)


def test_outside_a_git_checkout_the_commit_comes_from_the_image_or_is_unknown(tmp_path):
    # As in the container image, which holds the package but no .git.
    shutil.copytree(Path(dqn.__file__).parent, tmp_path / "dqn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = "from dqn.provenance import git_commit; print(git_commit())"
    env = {k: v for k, v in os.environ.items() if k != "DQN_IMAGE_GIT_COMMIT"}
    commits = [subprocess.run([sys.executable, "-c", script], cwd=tmp_path, text=True,
                              capture_output=True, check=True, timeout=60,
                              env={**env, "PYTHONPATH": str(tmp_path), **extra}).stdout.strip()
               for extra in ({"DQN_IMAGE_GIT_COMMIT": "0123abc"}, {})]
    assert commits == ["unknown (not run from a git checkout; the container image was built "
                       "from 0123abc)", "unknown (not run from a git checkout)"]
