"""A training run's state and its checkpoints: epoch snapshots, resume, interrupt files.

`TrainingState` bundles everything a run carries from step to step (counters, the
environment and its episode bookkeeping, learner, replay memory, the agent's random
generator, the training log); each part saves and restores itself. This module writes
that state as an epoch's files (`dqn.rundir` names them and their order) or as one
interrupt file, and puts it back, so that a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dqn import h5io
from dqn.errors import DataFileError
from dqn.learner import Learner
from dqn.play import Player
from dqn.replay import ReplayMemory
from dqn.rundir import RunDir, load_snapshot, load_weights
from dqn.trainlog import TrainLog

LOG = logging.getLogger("dqn")
PARTS = ("delta", "state", "log", "snapshot")  # an epoch's files, as parts of an interrupt file


@dataclass
class Counters:
    """Where a run stands."""

    epoch: int = 0  # epochs completed
    step: int = 0  # agent steps taken in training


@dataclass
class TrainingState:
    counters: Counters
    player: Player
    learner: Learner
    memory: ReplayMemory
    rng: np.random.Generator  # exploration and minibatch draws
    log: TrainLog

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Everything but the network's weights (the snapshot's) and the replay frames
        (the deltas') that a resume needs, as (attrs, arrays); the log too, so that each
        kept epoch can be resumed on its own."""
        env_arrays, env_values = self.player.env.get_state()
        arrays = {
            f"learner/{name}/{i:03d}": t.detach().cpu().numpy()
            for name, tensors in self.learner.state()["tensors"].items()
            for i, t in enumerate(tensors)
        }
        arrays.update({f"env/{name}": value for name, value in env_arrays.items()})
        arrays.update({f"log/{name}": value for name, value in self.log.arrays().items()})
        attrs = {
            "counters": json.dumps({**asdict(self.counters), **self.player.state()}),
            "env": json.dumps(env_values),
            "agent_rng": json.dumps(self.rng.bit_generator.state),
            "replay_added": self.memory.added,
        }
        return attrs, arrays

    def load_state(self, attrs: dict, arrays: dict[str, np.ndarray]) -> None:
        """The inverse of `state`: put learner, emulator, bookkeeping and RNG back."""
        tensors: dict[str, list] = {}
        for name in sorted(k for k in arrays if k.startswith("learner/")):
            tensors.setdefault(name.split("/")[1], []).append(arrays[name])
        self.learner.load_state({"tensors": tensors, "updates": attrs["update"]})
        self.player.env.set_state({name.removeprefix("env/"): value
                                   for name, value in arrays.items() if name.startswith("env/")},
                                  json.loads(attrs["env"]))
        self.rng.bit_generator.state = json.loads(attrs["agent_rng"])
        counters = json.loads(attrs["counters"])
        self.counters = Counters(epoch=counters.pop("epoch"), step=counters.pop("step"))
        self.player.load_state(counters)

    def parts(self, attrs: dict, since_epoch: int) -> dict:
        """What a resume needs, as {part: (attrs, arrays)} for the parts delta (the replay
        entries added since epoch `since_epoch` ended), state, log and snapshot (the
        weights)."""
        memory = self.memory
        since_step = self.log.epochs["step"][since_epoch - 1] if since_epoch else 0
        # One replay entry per agent step, so the entries since a step start at that step.
        start = max(since_step, memory.added - memory.size)
        counter_attrs = {**attrs, "epoch": self.counters.epoch, "step": self.counters.step,
                         "update": self.learner.updates}
        state_attrs, state = self.state()
        weights = {f"weights/{name}": t.detach().cpu().numpy()
                   for name, t in self.learner.network.state_dict().items()}
        return {
            "delta": ({**counter_attrs, "start": start, "stop": memory.added},
                      memory.entries(start, memory.added)),
            "state": ({**counter_attrs, **state_attrs}, state),
            "log": (counter_attrs, self.log.arrays()),
            "snapshot": (counter_attrs, weights),
        }


def save_epoch(run: RunDir, attrs: dict, state: TrainingState) -> None:
    epoch = state.counters.epoch
    run.write_epoch(epoch, **state.parts(attrs, since_epoch=epoch - 1))
    run.prune(epoch, oldest_needed(state, epoch))


def oldest_needed(state: TrainingState, epoch: int) -> int:
    """The oldest replay entry that a resume from `epoch`, or from the epoch before it
    (the fallback if `epoch`'s files are damaged), needs: the ring as it stood then."""
    previous_added = state.log.epochs["step"][epoch - 2] if epoch >= 2 else 0  # an entry a step
    return max(0, previous_added - state.memory.capacity)


def save_interrupted(run: RunDir, attrs: dict, state: TrainingState, meter: dict) -> None:
    """Everything since the newest snapshot, in one file written atomically: the parts of
    an epoch (their arrays under part/...) and `meter`, the record of the epoch so far."""
    _save_since_snapshot(run.interrupt, "interrupted", attrs, state, meter, state.counters.epoch)


def save_diverged(run: RunDir, attrs: dict, state: TrainingState, meter: dict) -> None:
    """As an interrupt file, for a person to inspect (nothing resumes from it): the epoch
    that ended with non-finite values, on top of the newest snapshot."""
    _save_since_snapshot(run.diverged, "diverged", attrs, state, meter, state.counters.epoch - 1)


def _save_since_snapshot(path: Path, kind: str, attrs: dict, state: TrainingState,
                         meter: dict, since_epoch: int) -> None:
    merged = {"meter": json.dumps(meter)}
    arrays = {}
    for part, (part_attrs, part_arrays) in state.parts(attrs, since_epoch).items():
        merged.update(part_attrs)
        arrays.update({f"{part}/{name}": value for name, value in part_arrays.items()})
    h5io.write(path, kind, merged, arrays, compress=True)


def restore(run: RunDir, new_state: Callable[[], TrainingState]
            ) -> tuple[TrainingState, Path | None, dict | None]:
    """The state the run left: the newest epoch, then the interrupt file that continues
    it; or, if the newest epoch's files are damaged, the epoch before it (the run then
    repeats the lost epoch, exactly). Returns the state, the file resumed from (None:
    nothing to resume) and the meter's record of the epoch in progress (None unless
    from an interrupt file)."""
    state = new_state()
    if run.interrupt.exists():  # refused now, not mistaken for a damaged epoch below
        h5io.read_attrs(run.interrupt, "interrupted")
    epochs = run.snapshot_epochs()
    if not epochs:
        run.prune(0, 0)  # keeps only an interrupt file from before the first snapshot
    else:
        try:
            resume_epoch(run, epochs[-1], state)
        except DataFileError as damage:
            previous = epochs[-1] - 1
            if previous and not run.state(previous).exists():
                raise
            LOG.warning(f"{damage}; so epoch {epochs[-1]} is lost: continuing from "
                        f"{'epoch ' + str(previous) if previous else 'the start'} instead")
            del state  # its replay memory, before a second one is made
            state = new_state()
            if not previous:
                run.prune(0, 0)
                return state, None, None
            try:
                resume_epoch(run, previous, state)
            except DataFileError as second:
                raise DataFileError(f"{damage}; and epoch {previous}, the fallback, is "
                                    f"damaged too: {second}") from None
            epochs = [previous]
        # Only once the epoch is back: a damaged file found while pruning is no reason to
        # give up an epoch (and the fallback must not delete the epoch it falls back from
        # before it has succeeded).
        run.prune(epochs[-1], oldest_needed(state, epochs[-1]))
    if run.interrupt.exists():
        return state, run.interrupt, resume_interrupted(run, state)
    return state, (run.snapshot(epochs[-1]) if epochs else None), None


def resume_epoch(run: RunDir, epoch: int, state: TrainingState) -> None:
    """Put every piece of state back as it was when `epoch` was committed."""
    load_snapshot(run.snapshot(epoch), state.learner.network)
    attrs, arrays = h5io.read(run.state(epoch), "resume_state")
    _load_state(run.state(epoch), state, attrs, arrays)
    log = {name.removeprefix("log/"): value for name, value in arrays.items()
           if name.startswith("log/")}
    if not log:  # a state written before states held the log: the run's log file
        log = h5io.read(run.log, "train_log")[1]
    state.log = TrainLog.from_arrays(log, epoch)

    memory = state.memory
    added = int(attrs["replay_added"])
    oldest = added - min(added, memory.capacity)
    expected = oldest  # the next entry the ring needs: deltas must join up from there
    for path in run.replay_deltas(epoch):
        delta_attrs, delta = h5io.read(path, "replay_delta")
        start, stop = _delta_range(path, delta_attrs, delta)
        if stop <= expected:
            continue
        if start > expected:
            raise DataFileError(f"{path}: starts at replay entry {start}, but entries "
                                f"{expected}..{start - 1} are in no delta file")
        skip = expected - start
        memory.put_entries(expected, {k: v[skip:] for k, v in delta.items()})
        expected = stop
    if expected != added:
        raise DataFileError(
            f"{run.root / 'resume'}: the replay deltas end at entry {expected}, "
            f"but {run.state(epoch)} expects {added}")


def _load_state(path: Path, state: TrainingState, attrs: dict, arrays: dict) -> None:
    """`state.load_state`, refusing by the file's name a state that does not fit this run
    (another network's or optimiser's tensors, another game's emulator)."""
    try:
        state.load_state(attrs, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DataFileError(f"{path}: its resume state does not fit this run "
                            f"({type(error).__name__}: {' '.join(str(error).split())})") from None


def _delta_range(path: Path, attrs: dict, delta: dict) -> tuple[int, int]:
    """The replay entries start..stop-1 that a delta holds, checked against its length."""
    start, stop = attrs["start"], attrs["stop"]
    if stop - start != len(delta["frames"]):
        raise DataFileError(f"{path}: holds {len(delta['frames'])} replay entries, but its "
                            f"start and stop attributes say {stop - start}")
    return start, stop


def resume_interrupted(run: RunDir, state: TrainingState) -> dict:
    """Continue from the step a signal stopped at, on top of the newest epoch (the
    memory holds that epoch's replay entries already); return the meter's record."""
    path = run.interrupt
    attrs, arrays = h5io.read(path, "interrupted")
    part = {name: {key.removeprefix(f"{name}/"): value for key, value in arrays.items()
                   if key.startswith(f"{name}/")}
            for name in PARTS}
    load_weights(path, part["snapshot"], state.learner.network)
    _load_state(path, state, attrs, part["state"])
    memory = state.memory
    (start, stop), added = _delta_range(path, attrs, part["delta"]), attrs["replay_added"]
    if stop != added:
        raise DataFileError(f"{path}: its replay entries end at {stop}, but its state "
                            f"expects {added}")
    if start > max(memory.added, added - min(added, memory.capacity)):
        raise DataFileError(f"{path}: its replay entries start at {start}, but the memory "
                            f"restored from epoch {state.counters.epoch} ends at {memory.added}")
    memory.put_entries(start, part["delta"])
    # The episodes of the epoch in progress are numbered counters.epoch + 1.
    state.log = TrainLog.from_arrays(part["log"], state.counters.epoch + 1)
    return json.loads(attrs["meter"])


def completed_epoch(run: RunDir, train_steps: int) -> int | None:
    """The run's last epoch if its newest snapshot reached `train_steps`, else None (a
    damaged newest snapshot too: `restore` then falls back an epoch)."""
    epochs = run.snapshot_epochs()
    try:
        if epochs and h5io.read_attrs(run.snapshot(epochs[-1]), "snapshot")["step"] >= train_steps:
            return epochs[-1]
    except DataFileError:
        pass
    return None


def mark_complete(run: RunDir, attrs: dict, epoch: int) -> None:
    """Write the run's completion file, naming its last snapshot: what the workflow
    waits for, so that no rule needs to know how many epochs a preset makes."""
    snapshot = h5io.read_attrs(run.snapshot(epoch), "snapshot")
    h5io.write(run.completion, "complete", {
        **attrs, "epoch": epoch, "step": snapshot["step"], "update": snapshot["update"],
        "snapshot": str(run.snapshot(epoch).relative_to(run.root))}, {})
