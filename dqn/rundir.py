"""The files of one training run, the order they are written in, and who may write them:
the run directory's layout, apart from what the files hold (`dqn.checkpoint`).

    DIR/heldout.h5                 held-out states, written once before training
    DIR/snapshots/epoch_NNNN.h5    network weights after epoch NNNN (read by evaluation)
    DIR/resume/state_NNNN.h5       the resume state: optimizer, target network, RNGs,
                                   emulator, counters, training log
    DIR/resume/replay_NNNN.h5      the replay entries added during epoch NNNN
    DIR/resume/interrupted.h5      all of the above since the newest snapshot, written
                                   when a signal stops training mid-epoch
    DIR/train_log.h5               per-episode returns and per-epoch statistics
    DIR/complete.h5                written last, once the run has reached train_steps:
                                   the final epoch, step and snapshot (the workflow's
                                   output of a training job)
    DIR/diverged.h5                instead of an epoch's files, if its loss or weights
                                   became non-finite: all since the newest snapshot
    DIR/dqn-run                    the marker of a run directory, written when it is
                                   made; `dqn train` holds a lock on it while it runs
    DIR/damaged/epoch_NNNN/        an epoch's files that could not be read back on
                                   resume, moved aside whole (never deleted); .2, .3, ...
                                   if the same epoch is set aside again

An epoch's training state is saved as its replay delta, resume state and snapshot (the
kinds of `dqn.layouts.CHECKPOINT`); it is committed by its snapshot, written last:
replay delta, resume state and log come first. Resuming takes the newest snapshot and
the resume state and deltas of that epoch, and deletes what a killed process left of
the next one. The newest two resume states (each with the log) and the deltas still
inside the ring of the older of the two are kept: a resume costs the frames of one
epoch per epoch on disk, not the whole memory, and if the newest epoch's files cannot
be read back the run moves them aside and continues from the epoch before
(`dqn.checkpoint.restore`), repeating that one epoch: a read that failed for a passing
reason (a network file system's hiccup) costs time, never files. An interrupt file
continues the newest epoch until the next one is committed; one that continues an older
epoch is stale and deleted.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path

from dqn import h5io
from dqn.atomic import check_writable, fsync_directory, make_directories
from dqn.errors import ConfigError, DataFileError, RunLockedError, RunMismatchError

IDENTITY_KEYS = ("game", "seed", "config")


class RunDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.heldout = self.root / "heldout.h5"
        self.log = self.root / "train_log.h5"
        self.interrupt = self.root / "resume" / "interrupted.h5"
        self.completion = self.root / "complete.h5"
        self.diverged = self.root / "diverged.h5"
        self.marker = self.root / "dqn-run"

    @contextmanager
    def writing(self):
        """Hold the run directory for one writer: make it (with its marker) if it is new,
        refuse a directory that is not a run's, and refuse while another process writes
        it. The kernel drops the lock when the process dies, however it dies."""
        if self.root.exists() and not self.marker.exists() and any(self.root.iterdir()):
            raise ConfigError(
                f"{self.root}: not empty and not a dqn run directory (no "
                f"{self.marker.name} marker); give a new or empty --out"
            )
        make_directories(self.root)
        with open(self.marker, "a+") as marker:
            try:
                fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                marker.seek(0)
                holder = marker.read().strip() or "a process that has just started"
                raise RunLockedError(
                    f"{self.root}: another dqn train is writing this run "
                    f"({holder}); wait for it to end or give another --out"
                ) from None
            except OSError as error:
                if error.errno not in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
                    raise
                # Some cluster file systems refuse locks (Lustre mounted without flock,
                # NFS with nolock): without one, two writers of a run could interleave.
                raise ConfigError(
                    f"{self.marker}: the file system refuses file locks "
                    f"({error.strerror}); a run directory needs them, so that two processes "
                    "never write one run: give an --out on one that grants them (a local "
                    "disk, NFSv4, Lustre mounted with flock)"
                ) from None
            marker.seek(0)
            marker.truncate()
            marker.write(
                f"dqn train, PID {os.getpid()} on host {socket.gethostname()}, since "
                f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC\n"
            )
            marker.flush()
            yield self

    def check_output(self, out: Path, kind: str) -> None:
        """Refuse an HDF5 output of a command that reads this run if it lies inside the
        run or would replace a file of another kind or of another run."""
        self.check_outside(out)
        h5io.check_replaceable(out, kind, self.root)
        check_writable(out)  # a read-only place fails now, not after the work

    def check_outside(self, out: Path) -> None:
        """Refuse an output of a command that reads this run if it lies inside the run:
        a reader never writes there."""
        if Path(out).resolve().is_relative_to(self.root.resolve()):
            raise ConfigError(
                f"--out {out}: inside the run directory {self.root}, which "
                "this command reads; write it elsewhere"
            )

    def snapshot(self, epoch: int) -> Path:
        return self.root / "snapshots" / f"epoch_{epoch:04d}.h5"

    def resume_state(self, epoch: int) -> Path:
        return self.root / "resume" / f"state_{epoch:04d}.h5"

    def replay_delta(self, epoch: int) -> Path:
        return self.root / "resume" / f"replay_{epoch:04d}.h5"

    def set_aside(self, epoch: int) -> Path:
        """Move the files of `epoch` (its snapshot, resume state and replay delta, and the
        interrupt file that continues it) into a new DIR/damaged/epoch_NNNN/, and return
        that folder: a resume that cannot read them back keeps them for the user to
        inspect or delete, rather than losing an epoch to a passing read error."""
        name = f"epoch_{epoch:04d}"
        aside = self.root / "damaged" / name
        copy = 1
        while aside.exists():  # the same epoch damaged again after its repeat
            copy += 1
            aside = self.root / "damaged" / f"{name}.{copy}"
        make_directories(aside)
        paths = [self.resume_state(epoch), self.replay_delta(epoch)]
        if (
            self.interrupt.exists()
            and h5io.read_attrs(self.interrupt, "interrupted")["epoch"] == epoch
        ):
            paths.append(self.interrupt)
        # The snapshot, which commits the epoch, goes last: a process killed before then
        # finds the epoch still newest, and the prune of a fallback cannot delete its
        # files.
        for path in [*paths, self.snapshot(epoch)]:
            if path.exists():
                os.replace(path, aside / path.name)
                # The new name made durable before the old one's removal: a power cut
                # between the two leaves the file under both names, never under neither.
                fsync_directory(aside)
                fsync_directory(path.parent)
        return aside

    def snapshot_epochs(self) -> list[int]:
        return _epochs(self.root / "snapshots", "epoch")

    def claim(self, attrs: dict) -> None:
        """Refuse a directory that holds a run of another game, seed or config."""
        if not self.heldout.exists():
            if self.snapshot_epochs():
                raise DataFileError(f"{self.heldout}: missing, but {self.root} has snapshots")
            return
        found = run_differences(attrs, h5io.read_attrs(self.heldout, "heldout"))
        if found:
            keep = " ".join(
                f"--set {key}={held if isinstance(held, str) else json.dumps(held)}"
                for key, held, _ in found
            )
            raise RunMismatchError(
                f"{self.root} holds another run ({describe_differences(found, 'asked')}); "
                "use another --out directory"
                + (f", or continue it with {keep}" if continues_with_its_settings(found) else "")
            )

    def write_epoch(self, epoch: int, saved: dict[str, tuple], log: tuple) -> None:
        """Write the files of `epoch`: `saved`, the training state as {kind: (attrs,
        arrays)} (`dqn.checkpoint.save`), and the training log, snapshot last."""
        h5io.write(self.replay_delta(epoch), "replay_delta", *saved["replay_delta"], compress=True)
        h5io.write(self.resume_state(epoch), "resume_state", *saved["resume_state"])
        h5io.write(self.log, "train_log", *log)
        h5io.write(self.snapshot(epoch), "snapshot", *saved["snapshot"])  # commits the epoch

    def prune(self, epoch: int, first_replay_delta: int) -> None:
        """Delete what a resume from epoch `epoch`, or from the one before it (the
        fallback if `epoch`'s files are damaged), no longer needs: older states, the
        replay deltas of epochs before `first_replay_delta`, anything of later epochs
        (left by a killed process), an interrupt file that does not continue `epoch`,
        temporary files."""
        for old in _epochs(self.root / "resume", "state"):
            if old not in (epoch, epoch - 1):
                self.resume_state(old).unlink()
        for old in _epochs(self.root / "resume", "replay"):
            if not first_replay_delta <= old <= epoch:
                self.replay_delta(old).unlink()
        for later in self.snapshot_epochs():
            if later > epoch:
                self.snapshot(later).unlink()
        if (
            self.interrupt.exists()
            and h5io.read_attrs(self.interrupt, "interrupted")["epoch"] != epoch
        ):
            self.interrupt.unlink()
        # Temporary files of the run's own names only (h5io writes NAME.h5.tmp).
        for directory, pattern in (
            (self.root, "*.h5.tmp"),
            (self.root / "snapshots", "epoch_*.h5.tmp"),
            (self.root / "resume", "*.h5.tmp"),
        ):
            for tmp in directory.glob(pattern):
                tmp.unlink()

    def replay_deltas(self, first: int, last: int) -> list[Path]:
        """The replay deltas there are of epochs `first` to `last`, oldest first."""
        epochs = _epochs(self.root / "resume", "replay")
        return [self.replay_delta(e) for e in epochs if first <= e <= last]


def run_differences(attrs: dict, held: dict) -> list[tuple[str, object, object]]:
    """Where the file of `attrs` belongs to another run than the held-out file of `held`:
    (key, held's value, attrs' value) for the IDENTITY_KEYS, each config key apart."""
    differences = []
    for key in IDENTITY_KEYS:
        if key == "config":
            ours, theirs = json.loads(attrs[key]), json.loads(held[key])
            differences += [
                (k, theirs.get(k), ours.get(k))
                for k in sorted(ours.keys() | theirs.keys())
                if ours.get(k) != theirs.get(k)
            ]
        elif attrs[key] != held[key]:
            differences.append((key, held[key], attrs[key]))
    return differences


def describe_differences(found: list[tuple[str, object, object]], other: str) -> str:
    """The differences `found` (`run_differences`) as `key=RUN'S VALUE (OTHER VALUE)`,
    e.g. `seed=0 (asked 1)`: the run's value first, then the one of `other`, the asking
    side."""
    return "; ".join(f"{key}={held!r} ({other} {value!r})" for key, held, value in found)


def continues_with_its_settings(found: list[tuple[str, object, object]]) -> bool:
    """Whether a run that differs by `found` is one to continue with its own settings:
    only where it is the same game and seed (another game or seed is another run)."""
    return not {key for key, _, _ in found} & {"game", "seed"}


def check_same_run(
    path: Path, attrs: dict, heldout: Path, held: dict, error: type[Exception] = DataFileError
) -> None:
    """Refuse the file `path` (`attrs`, its attributes) with `error` where another run
    than that of the held-out file `heldout` (`held`) wrote it."""
    if found := run_differences(attrs, held):
        raise error(
            f"{path}: a file of another run than {heldout} "
            f"({describe_differences(found, 'this file:')})"
        )


def _epochs(directory: Path, prefix: str) -> list[int]:
    pattern = re.compile(rf"{prefix}_(\d+)\.h5$")
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name)))
