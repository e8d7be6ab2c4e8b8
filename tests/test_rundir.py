"""A run directory nothing can corrupt: one writer at a time, no directory that is not a
run's, no output written over an input, and a diverged run that cannot pass silently."""

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess

import h5py
import numpy as np
import pytest
import torch

from dqn import h5io, rundir
from dqn.errors import ConfigError, RunMismatchError
from dqn.rundir import RunDir, check_same_run

from conftest import DQN, dqn, provenance_of, train_args, wait_for

# Runs trained, stopped and read back: not in make test-fast.
pytestmark = pytest.mark.slow

# A short run: 200 updates in 2 epochs.
TRAIN = train_args("Pong", progress_s=60, overrides=("train_steps=400", "eval_steps=100"))


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


def start_and_wait_for(out, landmark):
    """A training run of `out`, started and run until `landmark` exists."""
    process = subprocess.Popen(
        [*DQN, *TRAIN, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(landmark, process)
    return process


def test_a_second_writer_is_refused_and_a_reader_may_read_beside_the_first(tmp_path):
    out = tmp_path / "run"
    first = start_and_wait_for(out, RunDir(out).snapshot(1))
    try:
        first.send_signal(signal.SIGSTOP)  # holds the run, as a long epoch would
        second = dqn(*TRAIN, "--out", out)
        assert second.returncode == 2
        assert (
            f"{out}: another dqn train is writing this run (dqn train, PID {first.pid} on host "
        ) in last_line(second)
        # A reader needs no lock: a committed snapshot is never changed or deleted.
        evaluation = dqn("evaluate", "--run", out, "--out", tmp_path / "e.h5", "--device", "cpu")
        assert evaluation.returncode == 0, evaluation.stderr
    finally:
        first.kill()  # SIGKILL: the kernel drops the lock with the process
        first.wait()
    assert first.returncode == -signal.SIGKILL
    resumed = dqn(*TRAIN, "--out", out)
    assert resumed.returncode == 0, resumed.stderr


def test_a_directory_that_is_not_a_run_is_refused_and_left_as_it_was(tmp_path):
    # `--out ""` (an empty shell variable) is the current directory.
    (tmp_path / "notes.tmp").write_text("mine")
    result = dqn(*TRAIN, "--out", "", cwd=tmp_path)
    assert result.returncode == 2
    assert "not empty and not a dqn run directory (no dqn-run marker)" in last_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


def test_a_directory_without_the_marker_is_refused_even_if_it_holds_run_files(tmp_path):
    (tmp_path / "heldout.h5").write_bytes(b"")  # a run's file names make no run
    with pytest.raises(ConfigError, match="not empty and not a dqn run directory"):
        with RunDir(tmp_path).writing():
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["heldout.h5"]


def test_clean_up_on_resume_touches_only_the_names_a_run_writes(tmp_path):
    out = tmp_path / "run"
    out.mkdir()  # an empty directory becomes a run
    killed = start_and_wait_for(out, RunDir(out).snapshot(1))
    killed.kill()
    killed.wait()
    assert (out / "dqn-run").exists()
    leftovers = [
        out / "snapshots" / "epoch_0009.h5.tmp",
        out / "resume" / "interrupted.h5.tmp",
        out / "train_log.h5.tmp",
    ]
    for path in leftovers:  # what a killed writer can leave
        path.write_text("half written")
    mine = [out / "notes.tmp", out / "snapshots" / "mine.tmp"]
    for path in mine:
        path.write_text("mine")
    resumed = dqn(*TRAIN, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    # its first line names the run: game, preset and the keys changed from it, seed, length
    assert (
        f"{out}: Pong, preset ci [eval_steps=100, train_steps=400], "
        "seed 0, 400 agent steps, on cpu" in resumed.stderr.splitlines()[0]
    )
    assert [path for path in leftovers if path.exists()] == []
    assert all(path.read_text() == "mine" for path in mine)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("rundir") / "run"
    dqn(*TRAIN, "--out", out, check=True)
    return out


@pytest.mark.parametrize("command", ["evaluate", "trace"])
def test_no_reader_writes_inside_the_run_or_over_a_file_of_another_kind_or_run(
    finished, tmp_path, command
):
    run = RunDir(finished)
    snapshot = run.snapshot(run.snapshot_epochs()[-1])
    before = snapshot.read_bytes()
    inside = dqn(command, "--run", finished, "--out", snapshot, "--device", "cpu")
    assert inside.returncode == 2
    assert f"--out {snapshot}: inside the run directory {finished}" in last_line(inside)
    copy = tmp_path / "copy.h5"
    shutil.copy(snapshot, copy)
    other_kind = dqn(command, "--run", finished, "--out", copy, "--device", "cpu")
    assert other_kind.returncode == 2
    assert f"{copy}: exists and is a snapshot file" in last_line(other_kind)
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("mine")
    assert "exists and is not a file dqn wrote" in last_line(
        dqn(command, "--run", finished, "--out", unrelated, "--device", "cpu")
    )
    assert snapshot.read_bytes() == before and unrelated.read_text() == "mine"
    # its own kind, but another run's (a copy of the run evaluated, say): refused too
    mine = tmp_path / f"{command}.h5"
    assert dqn(command, "--run", finished, "--out", mine, "--device", "cpu").returncode == 0
    with h5py.File(mine, "r+") as f:
        f.attrs["run"] = "/elsewhere/run"
    written = mine.read_bytes()
    another = dqn(command, "--run", finished, "--out", mine, "--device", "cpu")
    assert another.returncode == 2
    assert f"{mine}: exists and holds the" in last_line(another)
    assert "of another run (/elsewhere/run)" in last_line(another)
    assert mine.read_bytes() == written


def test_an_epoch_set_aside_keeps_every_file_even_when_the_move_is_cut_short(tmp_path, monkeypatch):
    # The snapshot commits an epoch, so it moves last: a process killed mid-move leaves
    # the epoch newest, the next resume sets the rest aside again, and nothing is lost.
    run = RunDir(tmp_path)
    files = {run.snapshot(3): b"snapshot", run.resume_state(3): b"state"}
    files[run.replay_delta(3)] = b"replay"
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    real, moves = os.replace, []

    def killed_after_one(source, target):
        if moves:
            raise KeyboardInterrupt  # as a second Ctrl-C would
        moves.append(source)
        real(source, target)

    monkeypatch.setattr(os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        run.set_aside(3)
    monkeypatch.undo()
    assert run.snapshot_epochs() == [3]
    assert run.set_aside(3) == tmp_path / "damaged" / "epoch_0003.2"
    kept = {p.name: p.read_bytes() for p in (tmp_path / "damaged").rglob("*.h5")}
    assert kept == {path.name: data for path, data in files.items()}
    assert run.snapshot_epochs() == [] and not list((tmp_path / "resume").iterdir())


def test_an_epoch_set_aside_makes_each_files_new_name_durable_before_its_old_ones_removal(
    tmp_path, monkeypatch
):
    # On a file system that does not journal directory changes, a power cut between the
    # two syncs of a move leaves the file under both names, never under neither.
    run = RunDir(tmp_path)
    for path in (run.snapshot(3), run.resume_state(3), run.replay_delta(3)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"data")
    events, real_replace = [], os.replace

    def replace(source, target):
        events.append(("move", source.parent))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(rundir, "fsync_directory", lambda path: events.append(("sync", path)))
    aside = run.set_aside(3)
    moves = [i for i, (what, _) in enumerate(events) if what == "move"]
    assert len(moves) == 3
    for i in moves:
        source = events[i][1]
        assert events[i + 1 : i + 3] == [("sync", aside), ("sync", source)], events


def test_a_diverged_run_stops_with_its_own_exit_status_keeps_what_it_needs_and_stays_stopped(
    tmp_path,
):
    out = tmp_path / "run"
    # A step size no network survives: its values overflow within the first epoch.
    result = dqn(*TRAIN, "--out", out, "--set", "learning_rate=1e30")
    assert result.returncode == 3, result.stderr
    assert "training diverged in epoch 1 (step " in last_line(result)
    assert "non-finite weights in body." in last_line(result)
    run = RunDir(out)
    assert run.snapshot_epochs() == [] and run.diverged.exists()
    diverged_step = h5io.read_attrs(run.diverged, "diverged")["step"]
    with h5py.File(run.diverged) as f:  # h5io.read refuses its non-finite weights
        assert not np.isfinite(f["snapshot/weights/body.0.weight"][()]).all()

    # Run again, as a scheduler retries any failure: it stops before training anything.
    def files():  # all but the marker, which each writer stamps with its PID
        return {
            path: (path.stat().st_mtime_ns, path.read_bytes())
            for path in out.rglob("*")
            if path.is_file() and path != run.marker
        }

    before = files()
    again = dqn(*TRAIN, "--out", out, "--set", "learning_rate=1e30")
    assert again.returncode == 3, again.stderr
    assert last_line(again).endswith(
        f"{run.diverged}: this run diverged in epoch 1 (step {diverged_step:,}) and would "
        "again; to retry it on purpose, delete or move that file and run again"
    )
    assert files() == before
    # Deleted, the run trains again from the start and diverges at the same step.
    run.diverged.unlink()
    retried = dqn(*TRAIN, "--out", out, "--set", "learning_rate=1e30")
    assert retried.returncode == 3 and "training diverged in epoch 1" in last_line(retried)
    assert h5io.read_attrs(run.diverged, "diverged")["step"] == diverged_step


def _readers_refuse_an_edited_snapshot(finished, tmp_path, edit, expected):
    """Copy the finished run, rewrite its last snapshot's (attrs, arrays) through `edit`,
    and check that evaluate and trace refuse it with `expected` (formatted with the
    snapshot's and held-out file's paths and the snapshot's attributes), writing nothing."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    run = RunDir(copy)
    snapshot = run.snapshot(run.snapshot_epochs()[-1])
    attrs, arrays = h5io.read(snapshot, "snapshot")
    h5io.write(snapshot, "snapshot", *edit(attrs, arrays))
    expected = expected.format(snapshot=snapshot, heldout=run.heldout, **attrs)
    for command, out in (("evaluate", tmp_path / "e.h5"), ("trace", tmp_path / "t.h5")):
        result = dqn(command, "--run", copy, "--out", out, "--device", "cpu")
        assert result.returncode == 2 and expected in last_line(result), result.stderr
        assert not out.exists()


def test_a_file_holding_nan_is_refused_by_every_reader_naming_the_dataset(finished, tmp_path):
    def nan_bias(attrs, arrays):
        arrays["weights/body.0.bias"][3] = np.nan
        return attrs, arrays

    _readers_refuse_an_edited_snapshot(
        finished,
        tmp_path,
        nan_bias,
        "{snapshot}: dataset weights/body.0.bias holds non-finite values (nan or inf)",
    )


def test_a_snapshot_of_another_run_copied_in_is_refused_by_every_reader(finished, tmp_path):
    _readers_refuse_an_edited_snapshot(
        finished,
        tmp_path,
        lambda attrs, arrays: ({**attrs, "seed": 8}, arrays),
        "{snapshot}: a file of another run than {heldout} (seed={seed} (this file: 8))",
    )


def test_a_run_begun_on_another_machine_is_the_same_run(tmp_path):
    # The machine is provenance, not identity: a run stopped on one machine continues on
    # another (and its snapshots are read there), though the two may compute other bits.
    run = RunDir(tmp_path)
    ours = provenance_of("Pong", 0)
    elsewhere = {"cpu": "Intel(R) Xeon(R) Platinum 8375C", "cpu_vendor": "GenuineIntel"}
    theirs = {**ours, "machine": json.dumps({**json.loads(ours["machine"]), **elsewhere})}
    h5io.write(run.heldout, "heldout", theirs, {"states": np.zeros((2, 4, 84, 84), np.uint8)})
    held = h5io.read_attrs(run.heldout, "heldout")
    run.claim(ours)
    check_same_run(tmp_path / "snapshot.h5", ours, run.heldout, held)
    with pytest.raises(RunMismatchError, match=r"seed=0 \(asked 1\)"):
        run.claim(provenance_of("Pong", 1))


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB file system (tmpfs): room for the held-out states, not for an epoch."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or not shutil.which("mount")
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("needs root and tmpfs to make a small file system")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_ends_with_one_line_naming_the_file_and_leaves_no_temporary(small_disk):
    out = small_disk / "run"
    result = dqn(*TRAIN, "--out", out)
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(
        rf"dqn train: error: {out}/\S+\.h5: No space left on device", last_line(result)
    )
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert list(out.rglob("*.tmp")) == []
    for path in out.rglob("*.h5"):  # what was written is whole
        h5io.read_attrs(path, _kind_of(path))


def _kind_of(path):
    with h5py.File(path) as f:
        return f.attrs["kind"].decode()  # a fixed-length string, as h5io writes text


def test_an_output_that_cannot_be_written_is_found_before_any_work(finished, tmp_path, monkeypatch):
    from dqn import evaluate

    def play(*args):
        raise AssertionError("a snapshot was evaluated before the output was checked")

    monkeypatch.setattr(evaluate, "play", play)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError):  # its parent is a file
        evaluate.evaluate_run(finished, blocker / "e.h5", torch.device("cpu"))


def test_weights_of_another_network_are_refused_in_one_line_that_names_every_misfit(tmp_path):
    from dqn import networks
    from dqn.checkpoint import load_weights
    from dqn.errors import DataFileError

    nature = {
        f"weights/{name}": value.numpy()
        for name, value in networks.build("nature2015", 4).state_dict().items()
    }
    with pytest.raises(DataFileError) as error:
        load_weights(tmp_path / "s.h5", nature, networks.build("paper2013", 4))
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        f"{tmp_path / 's.h5'}: its weights do not fit"
    )
    assert "Unexpected key(s)" in message and "size mismatch for body.0.weight" in message


def _rewrite(path, change):
    """Apply `change` to the open HDF5 file `path`, as a hand or another program might."""
    with h5py.File(path, "a") as f:
        change(f)


def _replace(f, name, value):
    del f[name]
    f[name] = value


# Each: the file of the finished run to change, how, the command (run = the damaged
# copy, tmp = a scratch directory), and what its one line of error says.
MISFITS = {
    "held-out file with a huge declared extra dataset (evaluate)": (
        "heldout.h5",
        lambda f: f.create_dataset("extra", (10**9,), "f8", chunks=(10**6,), compression="gzip"),
        ["evaluate", "--run", "{run}", "--out", "{tmp}/e.h5"],
        "heldout.h5: unexpected dataset extra in a file of kind heldout",
    ),
    "snapshot weight replaced by a soft link (trace)": (
        "snapshots/epoch_0002.h5",
        lambda f: _replace(f, "weights/body.0.bias", h5py.SoftLink("/weights/body.2.bias")),
        ["trace", "--run", "{run}", "--out", "{tmp}/t.h5"],
        "epoch_0002.h5: weights/body.0.bias is a soft link to /weights/body.2.bias; "
        "dqn reads no links",
    ),
    "held-out states of another shape (resumed train)": (
        "heldout.h5",
        lambda f: _replace(f, "states", np.zeros((5, 84, 84), np.uint8)),
        [*TRAIN, "--out", "{run}"],
        "heldout.h5: dataset states: expected uint8 of shape (states, 4, 84, 84), "
        "found uint8 of shape (5, 84, 84)",
    ),
    "interrupt file that is another file (resumed train)": (
        "resume/interrupted.h5",
        None,
        [*TRAIN, "--out", "{run}"],
        "interrupted.h5: expected a file of kind interrupted, found kind='resume_state'",
    ),
}


@pytest.mark.parametrize("case", MISFITS)
def test_a_file_that_does_not_fit_its_layout_is_one_line_naming_file_and_item(
    finished, tmp_path, case
):
    name, change, command, message = MISFITS[case]
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for epoch_2 in ("snapshots/epoch_0002.h5", "resume/state_0002.h5", "complete.h5"):
        if "train" in command:  # a run to resume: drop its last epoch
            (run / epoch_2).unlink()
    if change is None:
        shutil.copy(run / "resume/state_0001.h5", run / name)
    else:
        _rewrite(run / name, change)
    result = dqn(*[part.format(run=run, tmp=tmp_path) for part in command], "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert last_line(result).startswith(f"dqn {command[0]}: error: {run}/"), last_line(result)
    assert last_line(result).endswith(message), last_line(result)
    assert (run / "snapshots/epoch_0001.h5").exists()  # a refused file costs no epoch


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK])
def test_a_file_system_that_refuses_locks_is_named_and_the_run_refused(tmp_path, monkeypatch, code):
    """Lustre mounted without flock answers ENOSYS, NFS with nolock ENOLCK: the run is
    refused by a message that says so, not by a bare OSError."""

    def refused(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", refused)
    run = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match=f"{run.marker}: the file system refuses file locks"):
        with run.writing():
            pass
