"""The files of one training run and the order they are written in.

    DIR/heldout.h5                 held-out states, written once before training
    DIR/snapshots/epoch_NNNN.h5    network weights after epoch NNNN (read by evaluation)
    DIR/resume/state_NNNN.h5       optimizer, target network, RNGs, emulator, counters
    DIR/resume/replay_NNNN.h5      the replay entries added during epoch NNNN
    DIR/resume/interrupted.h5      all of the above since the newest snapshot, written
                                   when a signal stops training mid-epoch
    DIR/train_log.h5               per-episode returns and per-epoch statistics
    DIR/complete.h5                written last, once the run has reached train_steps:
                                   the final epoch, step and snapshot (the workflow's
                                   output of a training job)

An epoch is committed by its snapshot, written last: replay delta, resume state and log
come first. Resuming takes the newest snapshot and the state and deltas of that epoch,
and deletes what a killed process left of the next one. Only the newest resume state
and the deltas still inside the replay ring are kept, so a resume costs the frames of
one epoch per epoch on disk, not the whole memory. An interrupt file continues the
newest epoch until the next one is committed; one that continues an older epoch is stale
and deleted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from dqn import h5io
from dqn.errors import DataFileError, RunMismatchError

IDENTITY_KEYS = ("game", "seed", "config")


class RunDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.heldout = self.root / "heldout.h5"
        self.log = self.root / "train_log.h5"
        self.interrupt = self.root / "resume" / "interrupted.h5"
        self.completion = self.root / "complete.h5"

    def snapshot(self, epoch: int) -> Path:
        return self.root / "snapshots" / f"epoch_{epoch:04d}.h5"

    def state(self, epoch: int) -> Path:
        return self.root / "resume" / f"state_{epoch:04d}.h5"

    def replay_delta(self, epoch: int) -> Path:
        return self.root / "resume" / f"replay_{epoch:04d}.h5"

    def snapshot_epochs(self) -> list[int]:
        return _epochs(self.root / "snapshots", "epoch")

    def claim(self, attrs: dict) -> None:
        """Refuse a directory that holds a run of another game, seed or config."""
        if not self.heldout.exists():
            if self.snapshot_epochs():
                raise DataFileError(f"{self.heldout}: missing, but {self.root} has snapshots")
            return
        held, _ = h5io.read(self.heldout, "heldout", ("states",))
        differences = []
        for key in IDENTITY_KEYS:
            if key == "config":
                ours, theirs = json.loads(attrs[key]), json.loads(held[key])
                differences += [f"{k}={theirs.get(k)!r} (asked {ours.get(k)!r})"
                                for k in sorted(ours.keys() | theirs.keys())
                                if ours.get(k) != theirs.get(k)]
            elif attrs[key] != held[key]:
                differences.append(f"{key}={held[key]!r} (asked {attrs[key]!r})")
        if differences:
            raise RunMismatchError(
                f"{self.root} holds another run ({'; '.join(differences)}); "
                "use another --out directory")

    def write_epoch(self, epoch: int, delta: tuple, state: tuple, log: tuple,
                    snapshot: tuple) -> None:
        """Write the files of `epoch`, each an (attrs, arrays) pair, snapshot last."""
        h5io.write(self.replay_delta(epoch), "replay_delta", *delta, compress=True)
        h5io.write(self.state(epoch), "resume_state", *state)
        h5io.write(self.log, "train_log", *log)
        h5io.write(self.snapshot(epoch), "snapshot", *snapshot)  # commits the epoch

    def prune(self, epoch: int, oldest_replay_entry: int) -> None:
        """Delete what epoch `epoch` no longer needs: older states, deltas out of the ring,
        anything of later epochs (left by a killed process), an interrupt file that does
        not continue `epoch`, and temporary files."""
        for old in _epochs(self.root / "resume", "state"):
            if old != epoch:
                self.state(old).unlink()
        for old in _epochs(self.root / "resume", "replay"):
            if old > epoch:
                self.replay_delta(old).unlink()
            elif h5io.read_attrs(self.replay_delta(old), "replay_delta")["stop"] <= oldest_replay_entry:
                self.replay_delta(old).unlink()
        for later in self.snapshot_epochs():
            if later > epoch:
                self.snapshot(later).unlink()
        if self.interrupt.exists() and h5io.read_attrs(self.interrupt, "interrupted")["epoch"] != epoch:
            self.interrupt.unlink()
        for tmp in self.root.rglob("*.tmp"):
            tmp.unlink()

    def replay_deltas(self, epoch: int) -> list[Path]:
        return [self.replay_delta(e) for e in _epochs(self.root / "resume", "replay") if e <= epoch]


def load_snapshot(path: Path, network: torch.nn.Module) -> dict:
    """Load the weights of snapshot `path` into `network`; return the snapshot's
    attributes. A damaged file, or weights of another network, is refused by name."""
    attrs, arrays = h5io.read(path, "snapshot")
    load_weights(path, arrays, network)
    return attrs


def load_weights(path: Path, arrays: dict, network: torch.nn.Module) -> None:
    """Load the `weights/...` arrays read from file `path` into `network`."""
    weights = {name.removeprefix("weights/"): torch.as_tensor(value)
               for name, value in arrays.items() if name.startswith("weights/")}
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        raise DataFileError(f"{path}: its weights do not fit the network "
                            f"({str(error).splitlines()[0]})") from None


def _epochs(directory: Path, prefix: str) -> list[int]:
    pattern = re.compile(rf"{prefix}_(\d+)\.h5$")
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name)))

