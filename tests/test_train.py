"""Training runs on the `ci` preset: files, the TensorBoard view, exact resume after
SIGKILL and after SIGTERM or SIGINT (saved mid-epoch), refusals."""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dqn import checkpoint, cli, h5io, migrate, networks, presets, provenance, seeding
from dqn.atari import Atari
from dqn.checkpoint import TrainingState
from dqn.devices import machine
from dqn.errors import DataFileError, Diverged, FileAccessError, RunMismatchError, Stopped
from dqn.evaluate import TrainedRun, evaluate_run, load_network, trace_run
from dqn.events import EVENTS_DIR
from dqn.explore import choose_action, epsilon, greedy
from dqn.games import make_env
from dqn.learner import Learner
from dqn.play import Episode, Player, Step, random_policy
from dqn.replay import ENTRY_BYTES, ReplayMemory, save_bytes, training_bytes
from dqn.rundir import RunDir
from dqn.train import stop_signals, train
from dqn.trainlog import Counters, TrainLog

from conftest import (
    ARCHIVED,
    DQN,
    ROOT,
    array_filters,
    assert_same_weights,
    dqn,
    epoch_end_step,
    full_epochs,
    load_script,
    train_args,
    wait_for,
    weights,
)

# Runs trained, killed and resumed: not in make test-fast.
pytestmark = pytest.mark.slow

CPU = torch.device("cpu")
TRAIN = train_args("Breakout", 1, progress_s=1)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One uninterrupted ci run, trained in a subprocess like the interrupted ones."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    dqn(*TRAIN, "--out", out, check=True)
    return out


def copy_of(finished_run, out):
    """A copy of the finished run at `out`: its RunDir and its last epoch."""
    shutil.copytree(finished_run, out)
    run = RunDir(out)
    return run, run.snapshot_epochs()[-1]


def kill_when(out, landmark, sig=signal.SIGKILL):
    """Start `dqn train --out out`, send it `sig` as soon as `landmark` exists; return its
    exit status."""
    assert not landmark.exists()  # else the signal could come before Python is up
    process = subprocess.Popen(
        [*DQN, *TRAIN, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(landmark, process)
    process.send_signal(sig)
    return process.wait(timeout=60)


def stop_at_step(out, step, sig, overrides=(), **popen):
    """Start `dqn train --out out` (`popen`: Popen's arguments, another checkout's code),
    send it `sig` once a progress line shows agent step `step` or later (tied to progress,
    not the clock); return its exit status."""
    process = subprocess.Popen(
        [*DQN, *TRAIN, "--out", str(out), *overrides, "--progress-s", "0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    for line in process.stderr:
        if (seen := re.search(r"\] step ([\d,]+)/", line)) and int(
            seen[1].replace(",", "")
        ) >= step:
            process.send_signal(sig)
            break
    process.stderr.read()
    return process.wait(timeout=60)


def test_a_run_writes_heldout_snapshots_and_log(finished_run):
    run = RunDir(finished_run)
    config = presets.load("ci")
    attrs, held = h5io.read(run.heldout, "heldout")
    assert held["states"].shape == (config.heldout_states, 4, 84, 84)
    assert held["states"].dtype == np.uint8 and held["states"].any()
    with h5py.File(run.heldout) as f:
        assert f["states"].compression == "lzf"
    assert attrs["game"] == "Breakout" and attrs["seed"] == 1 and attrs["preset"] == "ci"
    epochs = run.snapshot_epochs()
    expected = full_epochs(config)
    assert epochs == list(range(1, expected + 1))
    complete = h5io.read_attrs(run.completion, "complete")  # written last, names the final one
    assert (complete["epoch"], complete["snapshot"]) == (
        expected,
        f"snapshots/epoch_{expected:04d}.h5",
    )
    last = h5io.read_attrs(run.snapshot(epochs[-1]), "snapshot")
    assert (last["step"], last["update"]) == (
        config.train_steps,
        config.train_steps - config.replay_start_steps,
    )
    _, log = h5io.read(run.log, "train_log")
    assert log["epochs/epoch"].tolist() == epochs
    assert log["episodes/return"].size > 0 and np.all(np.diff(log["episodes/end_step"]) > 0)
    assert np.all(log["epochs/steps_per_s"] > 0) and np.all(np.isfinite(log["epochs/loss_mean"]))
    # the newest resume state and the one before it (the fallback) are kept, no temporary file
    assert sorted(p.name for p in (finished_run / "resume").glob("state_*")) == [
        f"state_{epoch:04d}.h5" for epoch in epochs[-2:]
    ]
    assert not list(finished_run.rglob("*.tmp"))
    # every file names the machine that computed it: this process's CPU
    for path in finished_run.rglob("*.h5"):
        assert json.loads(h5io.read_attrs(path, _kind(path))["machine"]) == machine(CPU), path


def test_the_memory_check_budgets_the_largest_replay_save_the_first_epochs(finished_run):
    # Each epoch saves the replay entries added since the last; the first epoch's hold the
    # replay start's too (300 entries, where an epoch after it adds 100). The memory check
    # and the workflow's mem_mb (replay.training_bytes) must budget that save.
    run, config = RunDir(finished_run), presets.load("ci")
    saves = [
        h5io.read_attrs(path, "replay_delta")
        for path in run.replay_deltas(1, run.snapshot_epochs()[-1])
    ]
    entries = [save["stop"] - save["start"] for save in saves]
    assert saves[0]["step"] == config.first_epoch_end_step == 300
    assert max(entries) == entries[0] == 300 > config.epoch_steps
    ring = config.replay_capacity_transitions * ENTRY_BYTES
    assert ring + save_bytes(max(entries)) <= training_bytes(config)


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """The scalars of a run's event files as TensorBoard reads them: {tag: [(step,
    value), ...]}, after the purges that the writers of resumed runs asked for."""
    events = EventAccumulator(str(run_dir / EVENTS_DIR), size_guidance={"scalars": 0})  # all
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def float32(values) -> list[float]:
    return np.asarray(values, np.float32).tolist()  # TensorBoard stores scalars as float32


def test_the_event_files_show_the_training_log_at_its_steps(finished_run):
    run = RunDir(finished_run)
    _, log = h5io.read(run.log, "train_log")
    seen = scalars(finished_run)
    assert set(seen) == {
        "episode/return",
        "episode/length_steps",
        "train/loss_mean",
        "train/epsilon",
        "train/steps_per_s",
        "train/updates_per_s",
        "train/average_max_q",
    }
    episode_steps = log["episodes/end_step"].tolist()
    for tag, column in (
        ("episode/return", "episodes/return"),
        ("episode/length_steps", "episodes/length_steps"),
    ):
        assert seen[tag] == list(zip(episode_steps, float32(log[column]))), tag
    epoch_steps = log["epochs/step"].tolist()
    for name in ("loss_mean", "epsilon", "steps_per_s", "updates_per_s"):
        assert seen[f"train/{name}"] == list(zip(epoch_steps, float32(log[f"epochs/{name}"])))
    # 2013 §5.1's average max-Q of each epoch's snapshot, as dqn evaluate measures it.
    config = presets.load("ci")
    states = h5io.read(run.heldout, "heldout")[1]["states"]
    expected = [
        networks.average_max_q(load_network(run.snapshot(epoch), config, 4, CPU)[0], states, CPU)
        for epoch in run.snapshot_epochs()
    ]
    assert seen["train/average_max_q"] == list(zip(epoch_steps, float32(expected)))


def test_no_tensorboard_writes_no_event_files(tmp_path):
    out = tmp_path / "run"
    overrides = ("train_steps=220", "epoch_updates=10", "heldout_collect_steps=40")
    args = [*train_args("Catch", overrides=overrides), "--out", str(out), "--no-tensorboard"]
    assert cli.main(args) == 0
    assert RunDir(out).completion.exists() and not (out / EVENTS_DIR).exists()


def assert_same_events(run, reference):
    """Each step's scalars once, as in `reference`'s (throughputs are timings)."""
    ours, theirs = scalars(run.root), scalars(reference.root)
    assert set(ours) == set(theirs)
    for tag in theirs:
        steps = [step for step, _ in ours[tag]]
        assert steps == [step for step, _ in theirs[tag]], tag
        assert steps == sorted(set(steps)), tag  # each step once
        if not tag.endswith("_per_s"):
            assert ours[tag] == theirs[tag], tag


def test_killed_at_any_moment_resumes_to_bit_identical_weights(finished_run, tmp_path):
    out = tmp_path / "killed"
    run = RunDir(out)
    # SIGKILL (no chance to clean up) at moments tied to progress, not to the clock, so
    # that a machine of any speed kills at the same places: while collecting the held-out
    # states, mid-epoch 2 (its steps 301-400), as snapshot 2 lands, and mid-epoch 4. Then
    # let it finish.
    for kill in (
        lambda: kill_when(out, run.heldout),
        lambda: stop_at_step(out, 350, signal.SIGKILL),
        lambda: kill_when(out, run.snapshot(2)),
        lambda: stop_at_step(out, 550, signal.SIGKILL),
    ):
        assert kill() == -signal.SIGKILL  # the run had not ended
        for path in out.rglob("*.h5"):  # never a half-written file under a final name
            h5io.read_attrs(path, _kind(path))
    done = dqn(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stderr  # the kills did land after a snapshot
    run, reference = RunDir(out), RunDir(finished_run)
    assert run.snapshot_epochs() == reference.snapshot_epochs()
    assert_same_weights(run, reference)
    assert_same_log(run, reference)
    assert_same_events(run, reference)
    assert len(list((out / EVENTS_DIR).iterdir())) > 1  # a file per process, read as one
    assert not list(out.rglob("*.tmp"))


def _kind(path):
    if path.parent.name == "snapshots":
        return "snapshot"
    if path.parent.name == "resume":
        return (
            "interrupted"
            if path.name == "interrupted.h5"
            else "resume_state"
            if path.name.startswith("state_")
            else "replay_delta"
        )
    kinds = {"heldout.h5": "heldout", "train_log.h5": "train_log", "complete.h5": "complete"}
    return kinds[path.name]


def assert_same_log(run, reference):
    """The same episodes and per-epoch losses (throughput columns are timings)."""
    _, log = h5io.read(run.log, "train_log")
    _, reference_log = h5io.read(reference.log, "train_log")
    for name in (
        "episodes/return",
        "episodes/end_step",
        "episodes/epoch",
        "epochs/step",
        "epochs/episodes",
        "epochs/loss_mean",
        "epochs/epsilon",
    ):
        np.testing.assert_array_equal(log[name], reference_log[name], err_msg=name)


def stop_and_check(out, step, sig, overrides=()):
    """Stop a run with `sig` at agent step `step` (stop_at_step); check the exit status
    and the interrupt file, and return the file's attributes."""
    run = RunDir(out)
    status = stop_at_step(out, step, sig, overrides)
    assert status == 128 + sig  # a failure, so Snakemake or SLURM retries the job
    attrs = h5io.read_attrs(run.interrupt, "interrupted")
    epochs = run.snapshot_epochs()
    committed = h5io.read_attrs(run.snapshot(epochs[-1]), "snapshot")["step"] if epochs else 0
    assert attrs["epoch"] == (epochs[-1] if epochs else 0) and attrs["step"] > committed
    return attrs


def finish_and_compare(out, reference, interrupt_step, overrides=()):
    run = RunDir(out)
    done = dqn(*TRAIN, "--out", out, *overrides)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {run.interrupt} at step {interrupt_step}" in done.stderr
    assert not run.interrupt.exists()  # the next epoch made it obsolete
    assert run.snapshot_epochs() == RunDir(reference).snapshot_epochs()
    assert_same_weights(run, RunDir(reference))
    assert_same_log(run, RunDir(reference))
    assert_same_events(run, RunDir(reference))


def test_sigterm_and_sigint_save_mid_epoch_and_a_rerun_ends_identical(finished_run, tmp_path):
    out, ci = tmp_path / "stopped", presets.load("ci")
    # As SLURM ends a job (time limit, preemption): SIGTERM, here during epoch 1, before
    # the first snapshot; then SIGTERM during epoch 2 and SIGINT (Ctrl-C) during epoch 4
    # of the continued runs, each time with updates since the snapshot. Each once a
    # progress line shows the step: a delay after a file could pass before any step on a
    # loaded machine, and past the epoch's end on a fast one.
    stop_and_check(out, 250, signal.SIGTERM)
    for step, sig in ((350, signal.SIGTERM), (550, signal.SIGINT)):
        attrs = stop_and_check(out, step, sig)
        assert json.loads(attrs["meter"])["losses"] > 0
        # it landed in the epoch that holds the step, not past that epoch's end
        assert attrs["epoch"] == (step - ci.replay_start_steps) // ci.epoch_steps
    finish_and_compare(out, finished_run, attrs["step"])


def test_a_stop_after_the_ring_wrapped_within_the_epoch_resumes_identical(tmp_path):
    # A replay memory of 40 entries, epochs of 100 updates, a stop 50 or more steps after
    # snapshot 2 (step 300) and before snapshot 3 (step 400): the interrupt file alone
    # refills the ring. With Adam, whose moments and step count must come back too (the
    # other resume tests cover RMSProp's).
    overrides = [
        "--set",
        "replay_capacity_transitions=40",
        "--set",
        "replay_start_steps=100",
        "--set",
        "optimizer=adam",
    ]
    reference = tmp_path / "reference"
    dqn(*TRAIN, "--out", reference, *overrides, check=True)
    out = tmp_path / "stopped"
    attrs = stop_and_check(out, 350, signal.SIGTERM, overrides)
    assert (
        attrs["start"]
        == attrs["stop"] - 40
        > h5io.read_attrs(RunDir(out).snapshot(2), "snapshot")["step"]
    )
    finish_and_compare(out, reference, attrs["step"], overrides)


def test_an_interrupt_file_older_than_the_newest_snapshot_is_ignored(finished_run, tmp_path):
    out = tmp_path / "stopped"
    run = RunDir(out)
    stop_at_step(out, 350, signal.SIGTERM)  # an interrupt file in epoch 2
    stale = run.interrupt.read_bytes()
    kill_when(out, run.snapshot(3))  # continues from it, then SIGKILL after epoch 3
    run.interrupt.write_bytes(stale)  # as if a copy of the old file came back
    done = dqn(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {run.snapshot(3)}" in done.stderr
    assert_same_weights(run, RunDir(finished_run))
    assert_same_log(run, RunDir(finished_run))


def test_leftovers_of_a_killed_epoch_are_discarded_on_resume(finished_run, tmp_path):
    out = tmp_path / "run"
    run = RunDir(out)
    kill_when(out, run.snapshot(2))
    last = run.snapshot_epochs()[-1]
    # What a process killed while writing epoch last+1 leaves: its delta and resume
    # state (written before the snapshot) and a temporary snapshot.
    shutil.copy(run.replay_delta(last), run.replay_delta(last + 1))
    shutil.copy(run.resume_state(last), run.resume_state(last + 1))
    (out / "snapshots" / f"epoch_{last + 1:04d}.h5.tmp").write_bytes(b"partial")
    dqn(*TRAIN, "--out", out, check=True)
    assert_same_weights(run, RunDir(finished_run))


def test_a_missing_replay_delta_stops_the_resume_naming_the_gap(finished_run, tmp_path):
    out = tmp_path / "run"
    run = RunDir(out)
    kill_when(out, run.snapshot(3))
    run.replay_delta(2).unlink()
    with pytest.raises(
        DataFileError,
        match=f"{run.replay_delta(3)}: starts at replay entry 400, "
        "but entries 300..399 are in no delta file",
    ):
        train("Breakout", "ci", presets.load("ci"), 1, out, CPU, progress_s=60)


def test_a_directory_of_another_run_is_refused_with_the_differences(finished_run):
    config = presets.load("ci", ["discount=0.9"])
    with pytest.raises(RunMismatchError) as error:
        train("Breakout", "ci", config, 1, finished_run, CPU)
    assert "discount=0.95 (asked 0.9)" in str(error.value)
    with pytest.raises(RunMismatchError, match=r"game='Breakout' \(asked 'Pong'\)"):
        train("Pong", "ci", presets.load("ci"), 1, finished_run, CPU)
    with pytest.raises(RunMismatchError, match=r"seed=1 \(asked 2\)"):
        train("Breakout", "ci", presets.load("ci"), 2, finished_run, CPU)


@pytest.fixture
def resumed_under_other_code(finished_run, tmp_path, monkeypatch, caplog):
    """A copy of the finished run whose last epoch was trained again by other code
    (commit 0123abc, torch 9.9.9): its RunDir, its last epoch and the library versions
    of the code that trained the epochs before. The warnings of that training are
    `caplog`'s records of the setup."""
    out = tmp_path / "run"
    run, last = copy_of(finished_run, out)
    run.completion.unlink()
    run.snapshot(last).unlink()  # so that the run resumes from the epoch before
    versions = provenance.library_versions()
    with monkeypatch.context() as other_code, caplog.at_level(logging.WARNING, logger="dqn"):
        other_code.setattr(provenance, "git_commit", lambda: "0123abc")
        other_code.setattr(provenance, "library_versions", lambda: {**versions, "torch": "9.9.9"})
        train("Breakout", "ci", presets.load("ci"), 1, out, CPU)
    return run, last, versions


def test_a_run_resumed_under_other_code_says_what_differs(resumed_under_other_code, caplog):
    # Allowed (a fix, an upgrade between two jobs of a run), but no longer one program's
    # run, bit for bit: the log says so, and the new files name the code that wrote them.
    run, last, versions = resumed_under_other_code
    stored = h5io.read_attrs(run.snapshot(last - 1), "snapshot")
    setup = caplog.get_records("setup")  # the fixture's training
    (warning,) = [r.getMessage() for r in setup if "other code" in r.getMessage()]
    assert warning.startswith(
        f"{run.snapshot(last - 1)} was written by other code: git_commit "
        f"{stored['git_commit']} (now 0123abc); torch {versions['torch']} (now 9.9.9); the run "
        "continues"
    )
    assert h5io.read_attrs(run.snapshot(last), "snapshot")["git_commit"] == "0123abc"
    clean = {**stored, "git_commit": "0123abc"}
    assert provenance.code_differences(clean, clean) == []
    # a name that does not tell the code: the same name is no sign of the same code
    for name in ("0123abc-dirty", "unknown (not run from a git checkout)"):
        unsure = {**stored, "git_commit": name}
        assert provenance.code_differences(unsure, unsure) == [
            f"git_commit {name}, which does not tell whether the code is the same"
        ]
    assert provenance.code_differences({**clean, "dqn_version": "0.0.1"}, clean) == [
        f"dqn_version 0.0.1 (now {clean['dqn_version']})"
    ]


def test_an_evaluation_and_a_trace_name_the_code_that_trained_each_snapshot(
    resumed_under_other_code, tmp_path
):
    # Their own provenance is the code that played the snapshots; a reference run keeps
    # its final snapshot only, so the code that trained the others is kept here too.
    run, last, versions = resumed_under_other_code
    first = h5io.read_attrs(run.snapshot(1), "snapshot")
    before = {
        "dqn_version": first["dqn_version"],
        "git_commit": first["git_commit"],
        "library_versions": versions,
    }
    other = {**before, "git_commit": "0123abc", "library_versions": {**versions, "torch": "9.9.9"}}
    evaluation, trace = tmp_path / "evaluation.h5", tmp_path / "trace.h5"
    evaluate_run(run.root, evaluation, CPU)
    trace_run(run.root, trace, CPU, steps=20)
    attrs = h5io.read_attrs(evaluation, "evaluation")
    assert json.loads(attrs["trained_by"]) == {
        "snapshots": [{**before, "epochs": list(range(1, last))}, {**other, "epochs": [last]}]
    }
    assert attrs["git_commit"] == provenance.git_commit() != "0123abc"
    traced = h5io.read_attrs(trace, "value_trace")
    assert json.loads(traced["trained_by"]) == {"snapshots": [{**other, "epochs": [last]}]}


def test_a_finished_run_is_not_trained_again(finished_run):
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*.h5")}
    train("Breakout", "ci", presets.load("ci"), 1, finished_run, CPU)
    assert {p: p.stat().st_mtime_ns for p in finished_run.rglob("*.h5")} == before


def test_a_damaged_newest_epoch_costs_one_epoch_and_the_run_ends_identical(finished_run, tmp_path):
    # The newest snapshot of a finished run truncated, then the newest resume state of a
    # killed one: each time the run says so, moves the epoch's files aside (a read error
    # may have been a passing one: nothing is deleted), continues from the epoch before,
    # repeats that epoch and ends with the same weights and log as if nothing had happened.
    out = tmp_path / "finished"
    run, last = copy_of(finished_run, out)
    data = run.snapshot(last).read_bytes()
    run.snapshot(last).write_bytes(data[: len(data) // 3])
    files = {p.name: p.read_bytes() for p in (run.snapshot(last), run.resume_state(last))}
    done = dqn(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    aside = out / "damaged" / f"epoch_{last:04d}"
    assert f"{run.snapshot(last)}: corrupt or truncated HDF5 file" in done.stderr
    assert (
        f"so epoch {last}'s files are moved to {aside} (delete them once checked): "
        f"continuing from epoch {last - 1} instead"
    ) in done.stderr
    assert {name: (aside / name).read_bytes() for name in files} == files
    assert (aside / run.replay_delta(last).name).exists()
    assert_same_weights(run, RunDir(finished_run))
    assert_same_log(run, RunDir(finished_run))
    # The lost epoch's scalars, written and flushed before its snapshot was, are read
    # once: the resumed run's writer purged them and wrote them again.
    assert_same_events(run, RunDir(finished_run))

    out = tmp_path / "killed"
    run = RunDir(out)
    kill_when(out, run.snapshot(3))
    data = run.resume_state(3).read_bytes()
    run.resume_state(3).write_bytes(data[:100])
    done = dqn(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "so epoch 3's files are moved to" in done.stderr
    assert "continuing from epoch 2 instead" in done.stderr
    assert (out / "damaged" / "epoch_0003" / "state_0003.h5").read_bytes() == data[:100]
    assert_same_weights(run, RunDir(finished_run))
    assert_same_log(run, RunDir(finished_run))
    assert_same_events(run, RunDir(finished_run))
    # Only the newest state and the one before it are kept.
    assert sorted(p.name for p in (out / "resume").glob("state_*")) == [
        "state_0003.h5",
        "state_0004.h5",
    ]


def test_the_fallback_from_a_damaged_epoch_frees_its_replay_memory_before_making_another(
    finished_run, tmp_path
):
    # The newest replay delta is read while the epoch loads into a state whose ring is
    # then almost full. The fallback makes a second state; by then the first ring must be
    # gone (a 1M-transition ring is most of a training job's memory, which is sized for
    # one: with two, the job would be killed for memory on every retry).
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    last = RunDir(out).snapshot_epochs()[-1]
    delta = RunDir(out).replay_delta(last)
    delta.write_bytes(delta.read_bytes()[:200])
    rings = []

    def new_state():
        assert [ring() for ring in rings] == [None] * len(rings)  # no ring made before lives
        state = _training_state(presets.load("ci"), 1, game="Breakout")
        rings.append(weakref.ref(state.memory))
        return state

    with RunDir(out).writing() as run:
        _, resumed_from, _ = checkpoint.restore(run, new_state)
    assert len(rings) == 2 and resumed_from == run.snapshot(last - 1)


@pytest.mark.parametrize("fault", ["permission", "memory"])
def test_a_newest_epoch_this_process_cannot_read_is_not_taken_for_damage(
    finished_run, tmp_path, monkeypatch, fault
):
    # A snapshot it may not read (a run directory shared between users), or an epoch's
    # files holding more than its memory (a job resumed with a smaller --mem) say nothing
    # of the files: the resume stops and names the file, and sets no epoch aside.
    out = tmp_path / "run"
    run, last = copy_of(finished_run, out)
    if fault == "permission":
        is_hdf5 = h5py.is_hdf5

        def refused(path):
            if Path(path) == run.snapshot(last):
                raise PermissionError(13, "Permission denied")
            return is_hdf5(path)

        monkeypatch.setattr(h5io.h5py, "is_hdf5", refused)
        message = f"{run.snapshot(last)}: cannot be read (Permission denied)"
    else:
        monkeypatch.setattr(h5io, "usable_memory", lambda: 1000)
        message = f"{run.snapshot(last)}: its datasets hold"
    before = sorted(p.relative_to(out) for p in out.rglob("*.h5"))
    with run.writing(), pytest.raises(FileAccessError, match=re.escape(message)):
        checkpoint.restore(run, lambda: _training_state(presets.load("ci"), 1, game="Breakout"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.h5")) == before
    assert not (out / "damaged").exists()


def test_a_damaged_replay_delta_that_only_the_epoch_before_needs_costs_nothing(tmp_path):
    # A ring of 150 entries: epochs end at steps 300, 400, 500 and 600, so a resume from
    # epoch 4 needs the deltas of epochs 3 and 4, and one from epoch 3 (the fallback, if
    # epoch 4's files are damaged) those of 2 and 3. Epoch 2's is kept for the fallback;
    # damage there is no reason to give up epoch 4, which does not need it.
    overrides = ["replay_capacity_transitions=150"]
    out = tmp_path / "run"
    dqn(*train_args("Breakout", 1, overrides=overrides), "--out", out, check=True)
    run = RunDir(out)
    kept = sorted(path.name for path in (out / "resume").glob("replay_*"))
    assert kept == [f"replay_000{epoch}.h5" for epoch in (2, 3, 4)]
    run.replay_delta(2).write_bytes(b"damaged")
    with run.writing():
        state, resumed_from, _ = checkpoint.restore(
            run, lambda: _training_state(presets.load("ci", overrides), 1, game="Breakout")
        )
    assert resumed_from == run.snapshot(4) and state.memory.added == 600
    assert run.replay_delta(2).read_bytes() == b"damaged" and not (out / "damaged").exists()


def test_a_resume_refuses_a_file_of_another_run_and_moves_nothing(finished_run, tmp_path):
    # A snapshot copied in from another seed's run (here: its seed attribute changed) is
    # not taken for damage, which would set the epoch aside: the run stops and names it.
    out = tmp_path / "mixed"
    run, final = copy_of(finished_run, out)
    run.snapshot(final).unlink()  # so that the run resumes from the epoch before
    last = final - 1
    with h5py.File(run.snapshot(last), "r+") as f:
        f.attrs["seed"] = 7
    before = sorted(p.relative_to(out) for p in out.rglob("*.h5"))
    with pytest.raises(RunMismatchError, match=rf"^{run.snapshot(last)}: a file of another run"):
        train("Breakout", "ci", presets.load("ci"), 1, out, CPU)
    assert sorted(p.relative_to(out) for p in out.rglob("*.h5")) == before
    assert not (out / "damaged").exists()


def test_the_first_signal_is_noted_and_a_second_one_acts_as_usual():
    # Python's own SIGINT handler, which a shell's background job (SIGINT ignored) lacks.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):  # what Python's own SIGINT handler raises
            with stop_signals() as received:
                signal.raise_signal(signal.SIGINT)
                assert received == [signal.SIGINT]  # noted; the loop saves and stops
                signal.raise_signal(signal.SIGINT)  # a second Ctrl-C aborts
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


# -- the loop's order: updates overlap the emulator, and nothing else changes --

SMALL = [
    "replay_capacity_transitions=60",
    "replay_start_steps=100",
    "update_period_steps=2",
    "train_steps=700",
    "epoch_updates=120",
    "heldout_collect_steps=40",
    "max_episode_frames=600",
    "target_update_period_steps=50",
    "loss=huber",
]


def train_small(config, out):
    """A run of `config` (a `ci` config) on Breakout from seed 3, in this process."""
    train("Breakout", "ci", config, 3, out, CPU, progress_s=float("inf"))


def train_stopped(monkeypatch, config, out, patch, expected):
    """train_small with `patch` (object, name, replacement) in place, which stops the run
    with `expected`; returns pytest's record of it."""
    monkeypatch.setattr(*patch)
    try:
        with pytest.raises(expected) as stopped:
            train_small(config, out)
    finally:
        monkeypatch.undo()
    return stopped


def algorithm_1(game, config, seed, steps):
    """Algorithm 1 written out on the bare emulator, one thing after another: act, play,
    store, draw a minibatch, update, refresh the target. Returns the learner (its network
    and target), the episode returns, and the agent's generator state and replay count
    at the end."""
    env = Atari(game, config, seeding.derive(seed, "train_env"))
    learner = Learner(config, env.n_actions, CPU, seeding.derive(seed, "network"))
    memory = ReplayMemory(config.replay_capacity_transitions)
    rng = seeding.generator(seed, "agent")
    env.new_episode()
    returns, episode_return, episode_start, perceive_terminal = [], 0.0, True, False
    for step in range(1, steps + 1):
        if perceive_terminal:  # terminal_takes_step: this step plays nothing
            perceive_terminal = False
        else:
            action = choose_action(
                epsilon(config, step - 1),
                env.n_actions,
                rng,
                lambda: greedy(networks.q_values(learner.network, env.stack, CPU)),
            )
            frame = env.frame.copy()
            reward, terminal = env.step(action)
            memory.store(Step(frame, episode_start, action, reward, terminal, None))
            episode_return += reward
            episode_start = terminal
            if terminal:
                returns.append(episode_return)
                episode_return = 0.0
                env.new_episode()
                perceive_terminal = config.terminal_takes_step
        if step > config.replay_start_steps and step % config.update_period_steps == 0:
            learner.update(memory.sample(config.minibatch_transitions, rng))
        learner.after_step(step)
    return learner, returns, (rng.bit_generator.state, memory.added)


def assert_ends_as_algorithm_1(run, config):
    """`run`'s newest snapshot, episode returns, agent generator and replay count are those
    of Algorithm 1 written out with the same seed and config; returns its learner and the
    run's training log."""
    learner, returns, (agent_rng, replay_added) = algorithm_1(
        "Breakout", config, 3, config.train_steps
    )
    last = run.snapshot_epochs()[-1]
    ours = weights(run.snapshot(last))
    for name, value in learner.network.state_dict().items():
        assert np.array_equal(ours[name], value.numpy()), name
    _, log = h5io.read(run.log, "train_log")
    assert log["episodes/return"].tolist() == returns and len(returns) > 3
    state = h5io.read_attrs(run.resume_state(last), "resume_state")
    assert json.loads(state["agent_rng"]) == agent_rng
    assert state["replay_added"] == replay_added
    return learner, log


def test_the_loop_ends_as_algorithm_1_written_out(tmp_path):
    # A ring that wraps, updates every other step, episodes of at most 150 steps, three
    # epochs with their saves and a target network: the loop ends with the final
    # weights, target network, episode returns, agent generator and replay count of
    # Algorithm 1 written out plainly with the same seed and config.
    config = presets.load("ci", SMALL)
    train_small(config, tmp_path)
    run = RunDir(tmp_path)
    learner, _ = assert_ends_as_algorithm_1(run, config)
    ours = weights(run.snapshot(3))
    # the target, last refreshed at step 651, as scripts/greedy-actions --targets reads it
    target = networks.build(config.network, learner.network.body[-1].out_features)
    checkpoint.load_target(run.resume_state(3), target)
    for name, value in learner.target.state_dict().items():
        assert np.array_equal(target.state_dict()[name], value), name
    assert not np.array_equal(ours["body.7.weight"], target.state_dict()["body.7.weight"])
    shown = run_script(
        "greedy-actions", tmp_path, "--epochs", "3", "--targets", str(run.resume_state(3))
    )
    assert shown.returncode == 0, shown.stderr
    online_line, target_line = shown.stdout.splitlines()
    assert target_line.startswith("target in state_0003.h5 (step 700): greedy on ")
    states = TrainedRun.open(tmp_path).heldout_states()
    for line, network in ((online_line, learner.network), (target_line, target)):
        mean_max_q = float(re.search(r"mean max-Q (-?[\d.]+)", line)[1])
        assert mean_max_q == pytest.approx(networks.average_max_q(network, states, CPU), abs=1e-4)
    state = h5io.read_attrs(run.resume_state(3), "resume_state")
    assert state["replay_added"] == config.train_steps


@pytest.mark.parametrize(
    "replay_start,expected",
    [
        # SMALL's epochs of 240 steps end at steps 240 and 480 (counted in updates: 340 and
        # 580), the first after 70 updates, not 120
        (100, [(240, 70), (480, 190), (700, 300)]),
        # a replay start longer than an epoch: none ends within it (at 240)
        (300, [(480, 90), (700, 200)]),
    ],
)
def test_epochs_counted_in_steps_end_where_dqn_3_evaluates_and_change_nothing_else(
    tmp_path, monkeypatch, replay_start, expected
):
    # DQN 3.0 evaluates at every multiple of eval_freq agent steps past learn_start
    # (train_agent.lua:110); the run is Algorithm 1 all the same, and one stopped within
    # its first, shorter epoch resumes to the same end.
    config = presets.load(
        "ci", [*SMALL, "epoch_counted_in=steps", f"replay_start_steps={replay_start}"]
    )
    train_small(config, tmp_path)
    run = RunDir(tmp_path)
    assert_ends_as_algorithm_1(run, config)
    ends = [h5io.read_attrs(run.snapshot(e), "snapshot") for e in run.snapshot_epochs()]
    assert [(end["step"], end["update"]) for end in ends] == expected
    assert config.first_epoch_end_step == expected[0][0]
    assert full_epochs(config) == len(expected) - 1
    assert [epoch_end_step(config, k) for k in range(1, len(expected))] == [
        step for step, _ in expected[:-1]
    ]
    real_step, played = Player.step, []

    def step(self, action):
        played.append(action)
        if len(played) == expected[0][0] - 40:  # within the first epoch, past replay start
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, action)

    out = tmp_path / "stopped"
    train_stopped(monkeypatch, config, out, (Player, "step", step), Stopped)
    stopped = h5io.read_attrs(RunDir(out).interrupt, "interrupted")
    assert stopped["epoch"] == 0 and replay_start < stopped["step"] < expected[0][0]
    train_small(config, out)
    assert_same_weights(RunDir(out), run)
    assert_same_log(RunDir(out), run)


def test_a_terminal_takes_a_step_of_its_own_and_a_stop_before_that_step_resumes_to_it(
    tmp_path, monkeypatch
):
    # DQN 3.0's count (terminal_takes_step): each training episode's end is followed by a
    # step that plays nothing, stores no replay entry, and may update. A SIGTERM right
    # after a terminal step (step 576, in epoch 2), before the step that perceives it:
    # the interrupt file holds the replay entries since epoch 1 ended, fewer than its
    # steps, and the ring holds more than an epoch's.
    config = presets.load("ci", [*SMALL, "replay_capacity_transitions=300"])
    config = config.with_values(terminal_takes_step=True)
    reference = tmp_path / "reference"
    train_small(config, reference)
    _, log = assert_ends_as_algorithm_1(RunDir(reference), config)
    ends, lengths = log["episodes/end_step"], log["episodes/length_steps"]
    assert ends[0] == lengths[0] and (np.diff(ends) == lengths[1:] + 1).all()
    state = h5io.read_attrs(RunDir(reference).resume_state(3), "resume_state")
    assert state["replay_added"] == config.train_steps - np.sum(ends < 700)

    real_step, played = Player.step, []

    def step(self, action):
        done = real_step(self, action)
        played.append(done.terminal)
        if done.terminal and len(played) > 500 and sum(played[500:]) == 1:
            signal.raise_signal(signal.SIGTERM)
        return done

    out = tmp_path / "stopped"
    train_stopped(monkeypatch, config, out, (Player, "step", step), Stopped)
    stopped = h5io.read(RunDir(out).interrupt, "interrupted")
    assert (stopped[0]["epoch"], stopped[0]["step"]) == (1, 576)
    assert stopped[1]["resume_state/log/episodes/end_step"][-1] == 576
    train_small(config, out)
    assert_same_weights(RunDir(out), RunDir(reference))
    assert_same_log(RunDir(out), RunDir(reference))


def test_an_epoch_that_ends_at_an_episodes_end_resumes_to_the_step_that_perceives_it(
    tmp_path, monkeypatch
):
    # Epoch 1 ends at step 150, where the first episode ends: the run killed right after
    # that snapshot resumes from it to the step that perceives the terminal, and ends as
    # Algorithm 1 written out with that step.
    overrides = [*SMALL, "replay_capacity_transitions=300", "epoch_updates=25"]
    config = presets.load("ci", overrides).with_values(terminal_takes_step=True)
    real_save_epoch = checkpoint.save_epoch

    def save_epoch(run, attrs, state):
        real_save_epoch(run, attrs, state)
        if state.counters.epoch == 1:
            raise KeyboardInterrupt  # as a kill: no interrupt file

    train_stopped(
        monkeypatch, config, tmp_path, (checkpoint, "save_epoch", save_epoch), KeyboardInterrupt
    )
    run = RunDir(tmp_path)
    assert run.snapshot_epochs() == [1] and not run.interrupt.exists()
    _, log = h5io.read(run.log, "train_log")
    assert log["epochs/step"].tolist() == [150] == log["episodes/end_step"].tolist()
    train_small(config, tmp_path)
    assert_ends_as_algorithm_1(run, config)


def test_a_signal_during_an_update_stops_the_loop_before_the_next_step(tmp_path, monkeypatch):
    # The signal comes during update 200, the one after step 500: the loop saves before
    # it acts again; continued, the run ends as if never stopped.
    config = presets.load("ci", SMALL)
    reference = tmp_path / "reference"
    train_small(config, reference)
    real_update = Learner.update

    def update(self, batch):
        if self.updates == 199:
            signal.raise_signal(signal.SIGTERM)
        return real_update(self, batch)

    out = tmp_path / "stopped"
    train_stopped(monkeypatch, config, out, (Learner, "update", update), Stopped)
    attrs = h5io.read_attrs(RunDir(out).interrupt, "interrupted")
    assert (attrs["update"], attrs["step"]) == (200, 500)
    train_small(config, out)
    assert_same_weights(RunDir(out), RunDir(reference))
    assert_same_log(RunDir(out), RunDir(reference))


def test_a_signal_while_the_weights_are_non_finite_saves_no_interrupt_file(tmp_path, monkeypatch):
    # Every resume would refuse such a file as damaged (status 2, again and again): the
    # epoch in progress is saved as diverged (status 3), and a retry stops at once.
    config = presets.load("ci", SMALL)
    real_update = Learner.update

    def update(self, batch):
        loss = real_update(self, batch)
        if self.updates == 200:
            with torch.no_grad():
                self.network.body[0].bias[0] = float("nan")
            signal.raise_signal(signal.SIGTERM)
        return loss

    stopped = train_stopped(monkeypatch, config, tmp_path, (Learner, "update", update), Diverged)
    run = RunDir(tmp_path)
    assert str(stopped.value).startswith(
        "training diverged in epoch 2 (step 500): non-finite weights in body.0.bias; saved "
        f"what it needs for inspection to {run.diverged}"
    )
    assert not run.interrupt.exists() and run.snapshot_epochs() == [1]
    assert h5io.read_attrs(run.diverged, "diverged")["epoch"] == 2
    with pytest.raises(Diverged, match="this run diverged in epoch 2 .step 500. and would again"):
        train_small(config, tmp_path)


# The last commit whose code writes format 1 (dqn 0.1.0): the reference runs of that
# version are continued by this one.
FORMAT_1_COMMIT = "e6f6a50649e0014e05f294ccc797d8b3c7ec369a"


def format_1_code(tmp_path) -> Path:
    """The package as it was at FORMAT_1_COMMIT, from this checkout's history: a format-1
    run directory holds over 10 MB (each snapshot and resume state some MB of weights),
    too much to keep in the repository, and that code writes one exactly."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", FORMAT_1_COMMIT, "dqn"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the git history holding {FORMAT_1_COMMIT} (format 1's code)")
    code = tmp_path / "format1"
    code.mkdir()
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    return code


def test_a_run_begun_by_format_1_code_ends_identical_when_continued(finished_run, tmp_path):
    # Stopped by SIGINT mid-epoch 3 (an interrupt file on top of two epochs) by dqn
    # 0.1.0, then continued by this version: the same weights and log as a run of this
    # version alone; its old files are read as format 2, its new ones written so; the
    # old and new snapshots evaluate together. The ci preset's values of today, set:
    # dqn 0.1.0's ci ran 1,000 steps in epochs of 200 updates, on minibatches of 32.
    code, out = format_1_code(tmp_path), tmp_path / "old"
    env = {**os.environ, "PYTHONPATH": str(code)}
    config = presets.load("ci")
    changed = ("train_steps", "epoch_updates", "minibatch_transitions")
    values = [f"--set={key}={getattr(config, key)}" for key in changed]
    stopped = stop_at_step(out, 450, signal.SIGINT, values, cwd=code, env=env)
    assert stopped == 128 + signal.SIGINT
    run = RunDir(out)
    with h5py.File(run.interrupt, "r") as f:
        assert f.attrs["format_version"] == 1 and "delta" in f and "log" in f
    assert run.snapshot_epochs() == [1, 2]
    step = h5io.read_attrs(run.interrupt, "interrupted")["step"]
    done = dqn(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {run.interrupt} at step {step}" in done.stderr
    assert_same_weights(run, RunDir(finished_run))
    assert_same_log(run, RunDir(finished_run))
    versions = []
    for epoch in run.snapshot_epochs():
        with h5py.File(run.snapshot(epoch), "r") as f:
            versions.append(f.attrs["format_version"])
    assert versions == [1, 1, 2, 2]
    evaluated = dqn("evaluate", "--run", out, "--out", tmp_path / "eval.h5", "--device", "cpu")
    assert evaluated.returncode == 0, evaluated.stderr
    assert len(h5io.read(tmp_path / "eval.h5", "evaluation")[1]["epoch"]) == 4


def test_a_run_whose_files_do_not_record_the_machine_continues_identical(finished_run, tmp_path):
    # The finished run as files written before provenance recorded the machine, less
    # its last epoch: it continues from them to the same weights and log; the old
    # snapshots read as not recorded, the new one names this machine.
    out = tmp_path / "old"
    run, last = copy_of(finished_run, out)
    run.snapshot(last).unlink()
    run.completion.unlink()
    for path in out.rglob("*.h5"):
        with h5py.File(path, "a") as f:
            del f.attrs["machine"]
    done = dqn(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {run.snapshot(last - 1)}" in done.stderr
    assert_same_weights(run, RunDir(finished_run))
    assert_same_log(run, RunDir(finished_run))
    recorded = [
        json.loads(h5io.read_attrs(run.snapshot(epoch), "snapshot")["machine"])
        for epoch in run.snapshot_epochs()
    ]
    assert recorded == [migrate.MACHINE_NOT_RECORDED] * (last - 1) + [machine(CPU)]


def _training_state(config, seed, game="Catch"):
    env = make_env(game, config, seeding.derive(seed, "train_env"))
    return TrainingState(
        Counters(),
        Player(env),
        Learner(config, env.n_actions, CPU, seed),
        ReplayMemory(config.replay_capacity_transitions),
        seeding.generator(seed, "agent"),
        TrainLog(),
    )


def test_load_puts_back_exactly_what_save_took():
    # A state after some play and updates, saved, loaded into a fresh state (as from
    # files: the parts read back), saved again: the same parts, array for array.
    config = presets.load("catch", ["replay_capacity_transitions=50", "minibatch_transitions=4"])
    state = _training_state(config, 1)
    for step in state.player.run(random_policy(state.rng), 70):
        state.memory.store(step)
        state.counters.step += 1
        if step.episode:
            state.log.add_episode(step.episode, state.counters.step, 1)
        if state.counters.step % 10 == 0:
            state.learner.update(state.memory.sample(4, state.rng))
    state.counters.epoch = 1
    state.log.add_epoch({name: 1 for name in state.log.epochs})
    saved = checkpoint.save(state, {"seed": 1}, since_entry=30)
    assert saved["replay_delta"][0]["start"] == 30 and saved["replay_delta"][0]["stop"] == 70

    fresh = _training_state(config, 2)  # other weights, generators and emulator
    fresh.memory.put_entries(20, state.memory.entries(20, 30))  # what older deltas hold
    here = Path("memory")
    checkpoint.load(
        fresh,
        snapshot=(here, *saved["snapshot"]),
        resume_state=(here, *saved["resume_state"]),
        replay_delta=[(here, *saved["replay_delta"])],
    )
    again = checkpoint.save(fresh, {"seed": 1}, since_entry=30)
    for kind, (attrs, arrays) in saved.items():
        assert again[kind][0] == attrs, kind
        assert sorted(again[kind][1]) == sorted(arrays), kind
        for name, value in arrays.items():
            np.testing.assert_array_equal(again[kind][1][name], value, err_msg=f"{kind} {name}")
    assert fresh.memory.added == 70 and fresh.counters == state.counters
    for name, column in state.memory.entries(20, 70).items():  # the whole ring
        np.testing.assert_array_equal(fresh.memory.entries(20, 70)[name], column, err_msg=name)
    assert fresh.rng.random() == state.rng.random()


def test_the_replay_entries_at_an_epochs_end_leave_out_the_steps_that_perceive_a_terminal():
    # terminal_takes_step: the episodes that end in steps 10 and 20 are perceived in steps
    # 11 and 21, which store no replay entry.
    overrides = ["replay_capacity_transitions=10", "minibatch_transitions=4"]
    config = presets.load("catch", [*overrides, "terminal_takes_step=true"])
    ends = [10, 20]
    steps = (0, 9, 10, 11, 12, 20, 21, 22)
    entries = [checkpoint._entries_at(step, ends, config) for step in steps]
    assert entries == [0, 9, 10, 10, 11, 19, 19, 20]
    plain = config.with_values(terminal_takes_step=False)
    assert [checkpoint._entries_at(step, ends, plain) for step in steps] == list(steps)
    # Epochs that end at an episode's end (step 10: 10 entries), at the step that
    # perceives one (step 21: 19 entries) and in episodes (steps 31 and 40: 29 and 38
    # entries). A resume from epoch 3, or from epoch 2 if 3 is damaged, needs the ring as
    # it stood at epoch 2's end: entries 9 to 18, the first of them in epoch 1's delta.
    # One from epoch 4 or 3 needs entries 19 to 28: epoch 3's delta, which starts at entry
    # 19 although epoch 2 ended at step 21.
    state = _training_state(config, 1)
    for end in ends:
        state.log.add_episode(Episode(0.0, 10, False), end, 1)
    for step in (10, 21, 31, 40):
        state.log.add_epoch({**{name: 0 for name in state.log.epochs}, "step": step})
    assert [checkpoint._end_entry(state, epoch) for epoch in range(5)] == [0, 10, 19, 29, 38]
    assert checkpoint.first_delta_needed(state, 3) == 1
    assert checkpoint.first_delta_needed(state, 4) == 3


def test_load_refuses_replay_entries_that_leave_a_gap():
    config = presets.load("catch", ["replay_capacity_transitions=50"])
    state = _training_state(config, 1)
    saved = checkpoint.save(state, {"seed": 1}, since_entry=0)
    attrs, arrays = saved["resume_state"]
    here = Path("resume.h5")
    empty = {name: value[:0] for name, value in saved["replay_delta"][1].items()}
    late = ({"start": 5, "stop": 5}, empty)
    with pytest.raises(
        DataFileError, match="^delta.h5: starts at replay entry 5, but entries 0..4"
    ):
        checkpoint.load(
            state,
            snapshot=(here, *saved["snapshot"]),
            resume_state=(here, {**attrs, "replay_added": 5}, arrays),
            replay_delta=[(Path("delta.h5"), *late)],
        )


def run_script(name, run, *options):
    """scripts/NAME --run RUN OPTIONS, as a user runs it from the checkout."""
    return subprocess.run(
        [sys.executable, f"scripts/{name}", "--run", str(run), *options],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_value_returns_sets_q_beside_the_discounted_clipped_return_that_followed(finished_run):
    script = load_script("value-returns")
    # by hand, discount 0.5: a terminal step's return stops there; the steps after the
    # last terminal one have no known return
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    terminals = np.array([False, False, True, False, True, False, False])
    returns, n = script.discounted_returns(rewards, terminals, 0.5)
    assert n == 5 and returns.tolist() == [1.25, 0.5, 1.0, 1.0, 0.0]
    assert script.discounted_returns(np.ones(3), np.zeros(3, bool), 0.9)[1] == 0

    # the play it sets them from: the Q-value of the action taken, the learner's reward
    class Scripted:  # rewards 4, -7, 0 again and again; every third step ends an episode
        n_actions, game_over, stack = 3, False, np.zeros((4, 84, 84), np.uint8)
        frame, steps = stack[-1], 0

        def new_episode(self):
            return self.stack

        def screen_rgb(self):
            return np.zeros((210, 160, 3), np.uint8)

        def step(self, action):
            self.steps += 1
            return [4.0, -7.0, 0.0][(self.steps - 1) % 3], self.steps % 3 == 0

    values = torch.tensor([0.1, 0.7, 0.3])
    network = lambda states: values.expand(len(states), 3)  # noqa: E731
    q, rewards, terminals = script.play(network, Scripted(), 1.0, np.random.default_rng(0), 9, True)
    assert rewards.tolist() == [1.0, -1.0, 0.0] * 3 and terminals.tolist() == [0, 0, 1] * 3
    # epsilon 1: random actions, and each step's Q is that of the action it took
    assert set(q.round(6)) == {0.1, 0.3, 0.7}
    _, unclipped, _ = script.play(network, Scripted(), 1.0, np.random.default_rng(0), 9, False)
    assert unclipped[:2].tolist() == [4.0, -7.0]

    def value_returns(*options):
        return run_script("value-returns", finished_run, *options)

    result = value_returns("--epochs", "4", "--steps", "3000", "--discounts", "0.99", "0")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    # a Breakout game of the eps=0.05 policy lasts hundreds of steps
    episodes, states = re.search(
        r"^epoch 4 \(step 600\): (\d+) episodes, ([\d,]+) states", line
    ).groups()
    assert int(episodes) >= 2 and 1 <= int(states.replace(",", "")) <= 3000
    mean_q, mean_return, difference = map(
        float,
        re.search(
            rf"mean Q\(s, a\) (-?[\d.]+), mean return (-?[\d.]+) "
            rf"\(discount {presets.load('ci').discount:g}\), Q - return ([-+][\d.]+)",
            line,
        ).groups(),
    )
    assert difference == pytest.approx(mean_q - mean_return, abs=1.5e-3)
    # with discount 0 the return is the step's own clipped reward, no more than with 0.99
    immediate = float(re.search(r"return with discount 0: (-?[\d.]+)", line)[1])
    assert 0 <= immediate <= float(re.search(r"return with discount 0.99: ([\d.]+)", line)[1])
    short = value_returns("--epochs", "1", "--steps", "5")
    assert (
        short.stdout == "epoch 1 (step 300): no episode ended within 5 steps; give more --steps\n"
    )
    missing = value_returns("--epochs", "99")
    assert missing.returncode == 1 and missing.stderr == (
        f"value-returns: {finished_run / 'snapshots'}: no snapshot of epoch 99 (it has 1-4)\n"
    )
    assert (
        "--discounts 1.5: a discount lies in [0, 1]" in value_returns("--discounts", "1.5").stderr
    )


def test_greedy_actions_reports_each_snapshots_choice_on_the_heldout_states(finished_run):
    def greedy_actions(*options):
        return run_script("greedy-actions", finished_run, *options)

    missing = greedy_actions("--epochs", "1", "99")
    assert missing.returncode == 1 and missing.stderr == (
        f"greedy-actions: {finished_run / 'snapshots'}: no snapshot of epoch 99 (it has 1-4)\n"
    )
    no_target = RunDir(finished_run).resume_state(4)
    refused = greedy_actions("--epochs", "4", "--targets", str(no_target))
    assert refused.returncode == 1 and refused.stderr == (
        f"greedy-actions: {no_target}: holds no target network (its run has none)\n"
    )
    result = greedy_actions("--inits", "fan_in_uniform", "he_normal")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + len(RunDir(finished_run).snapshot_epochs()) == 6
    labels = ["initial (fan_in_uniform)", "initial (he_normal)"]
    labels += [f"epoch {epoch} (step " for epoch in range(1, 5)]
    features, weights = [], []
    for label, line in zip(labels, lines):
        shares = re.findall(r"(NOOP|FIRE|RIGHT|LEFT) ([\d.]+)", line)
        assert line.startswith(label) and [a for a, _ in shares] == [
            "NOOP",
            "FIRE",
            "RIGHT",
            "LEFT",
        ]
        assert sum(float(s) for _, s in shares) == pytest.approx(1.0, abs=2e-3)
        assert float(re.search(r"mean gap ([\d.]+)", line)[1]) >= 0
        # the parts of Q over states and actions: their variances add up to Q's
        total, *parts = map(
            float,
            re.search(
                r"Q sd ([\d.]+): action part ([\d.]+), state part ([\d.]+), "
                r"state x action ([\d.]+)",
                line,
            ).groups(),
        )
        assert total**2 == pytest.approx(sum(p**2 for p in parts), rel=1e-3, abs=1e-9)
        features.append(float(re.search(r"features RMS ([\d.]+)", line)[1]))
        weights.append(
            [float(w) for w in re.search(r"mean \|w\| by layer ([\d. ]+)$", line)[1].split()]
        )
    # He's initialisation keeps the features' scale through the ReLUs; Torch7's shrinks it
    assert features[1] > 5 * features[0] > 0
    # mean |w| of each layer (DQN 3.0's "Weight norms"): Torch7's uniform(+-1/sqrt(fan_in))
    # gives half the bound, He's normal sqrt(2 / fan_in) sqrt(2 / pi); each within five
    # standard errors of the mean of its layer's n weights (relative: 0.577 / sqrt(n) for
    # the uniform, sqrt(pi / 2 - 1) / sqrt(n) for the normal), which He's uniform draw,
    # 8.5% above the normal's, fails on the large layers
    network = networks.build(TrainedRun.open(finished_run).config.network, n_actions=4)
    layers = [layer.weight for layer in networks.weighted_layers(network)]
    for drawn, expected, spread in (
        (weights[0], lambda f: 0.5 / f**0.5, 12**-0.5 / 0.5),
        (weights[1], lambda f: (4 / (np.pi * f)) ** 0.5, (np.pi / 2 - 1) ** 0.5),
    ):
        assert len(drawn) == len(layers)
        for value, w in zip(drawn, layers):
            assert value == pytest.approx(
                expected(w[0].numel()), rel=5 * spread / w.numel() ** 0.5, abs=1e-6
            )


def test_a_packed_reference_run_evaluates_as_the_run_did(finished_run, tmp_path):
    run = RunDir(finished_run)
    last = run.snapshot_epochs()[-1]
    evaluation = tmp_path / "eval.h5"
    expected = evaluate_run(finished_run, evaluation, torch.device("cpu"), only_epochs=[last])

    def script(*args):
        return subprocess.run(
            [sys.executable, "scripts/pack-reference-run", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    def pack(*evaluations, run=finished_run, out=tmp_path / "packed"):
        return script("--run", run, "--epoch", last, "--out", out, "--evaluations", *evaluations)

    result = pack(evaluation)
    assert result.returncode == 0, result.stderr
    packed = RunDir(tmp_path / "packed")
    assert packed.snapshot_epochs() == [last] and packed.marker.exists()
    copies = {
        run.heldout: (packed.heldout, "heldout"),
        run.snapshot(last): (packed.snapshot(last), "snapshot"),
        run.log: (packed.log, "train_log"),
        evaluation: (packed.root / "evaluations" / f"epoch_{last:04d}.h5", "evaluation"),
    }

    def attribute_types(path):
        with h5py.File(path) as f:
            types = [(key, f.attrs.get_id(key).dtype) for key in f.attrs]
            return {key: (t.str, h5py.check_string_dtype(t)) for key, t in types}

    def assert_copies_hold_the_same():
        # every array compressed (h5io.archive), attributes and values as they were, each
        # attribute of the same type (text as fixed-length UTF-8, as h5io.write stores it)
        for origin, (copy, kind) in copies.items():
            assert array_filters(copy) == {ARCHIVED}
            assert attribute_types(copy) == attribute_types(origin)
            (attrs, arrays), (copied_attrs, copied) = (h5io.read(p, kind) for p in (origin, copy))
            assert copied_attrs == attrs and copied.keys() == arrays.keys()
            for name, value in arrays.items():
                np.testing.assert_array_equal(copied[name], value, err_msg=f"{copy}: {name}")

    assert_copies_hold_the_same()
    before = {copy: copy.stat().st_size for copy, _ in copies.values()}
    again = script("--repack", packed.root)
    assert again.returncode == 0, again.stderr
    assert_copies_hold_the_same()
    assert {copy: copy.stat().st_size for copy, _ in copies.values()} == before
    # a run that dqn train may be writing is not packed: refused, and left as it is
    files = {path: path.read_bytes() for path in finished_run.rglob("*.h5")}
    refused = script("--repack", finished_run)
    assert refused.returncode == 1
    assert f"--repack {finished_run}: not a run packed by this script" in refused.stderr
    assert {path: path.read_bytes() for path in finished_run.rglob("*.h5")} == files
    again = evaluate_run(packed.root, tmp_path / "again.h5", torch.device("cpu"))
    for name, column in expected.items():
        np.testing.assert_array_equal(again[name], column, err_msg=name)

    # a snapshot whose checksum fails is refused by name before it is copied
    damaged = tmp_path / "damaged"
    shutil.copytree(finished_run, damaged)
    snapshot = RunDir(damaged).snapshot(last)
    with h5py.File(snapshot) as f:
        start = f["weights/body.0.weight"].id.get_chunk_info(0).byte_offset
    data = bytearray(snapshot.read_bytes())
    data[start + 100] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    refused = pack(evaluation, run=damaged, out=tmp_path / "refused")
    assert refused.returncode == 1
    assert f"{snapshot}: corrupt or truncated HDF5 file: dataset weights/body.0" in refused.stderr
    assert not (tmp_path / "refused").exists()

    # an --out that cannot be written (below a file) is named in one line
    below_a_file = tmp_path / "eval.h5" / "packed"
    refused = pack(evaluation, out=below_a_file)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr == f"pack-reference-run: {below_a_file}: Not a directory\n"

    # an evaluation of another run is refused by name, and nothing is written
    elsewhere = tmp_path / "elsewhere.h5"
    evaluate_run(packed.root, elsewhere, torch.device("cpu"))
    refused = pack(elsewhere, out=tmp_path / "refused")
    assert refused.returncode == 1 and f"{elsewhere}: an evaluation of" in refused.stderr
    assert not (tmp_path / "refused").exists()
