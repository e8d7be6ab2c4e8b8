"""A training run's state, saved and loaded by one symmetric pair: `save` and `load`.

`TrainingState` bundles everything a run carries from step to step (counters, the
environment and its episode bookkeeping, learner, replay memory, the agent's random
generator, the training log). `save` turns it into the parts of a checkpoint, one per
kind of `dqn.layouts.CHECKPOINT`; `load` puts such parts back, so that a resumed run
continues exactly. An epoch writes the parts as files of their own (`dqn.rundir` names
them and their order); a signal writes them into one interrupt file, under KIND/...
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dqn import h5io, networks
from dqn.errors import DataFileError, FileAccessError, RunMismatchError
from dqn.layouts import CHECKPOINT
from dqn.learner import Learner
from dqn.play import Player
from dqn.presets import Config
from dqn.replay import ReplayMemory
from dqn.rundir import RunDir, check_same_run
from dqn.trainlog import Counters, TrainLog

LOG = logging.getLogger("dqn")
Part = tuple[dict, dict[str, np.ndarray]]  # a file's attributes and arrays
Read = tuple[Path, dict, dict[str, np.ndarray]]  # a part as read, with the file it came from


@dataclass
class TrainingState:
    counters: Counters
    player: Player
    learner: Learner
    memory: ReplayMemory
    rng: np.random.Generator  # exploration and minibatch draws
    log: TrainLog


def save(state: TrainingState, attrs: dict, since_entry: int) -> dict[str, Part]:
    """The training state as the parts of a checkpoint, {kind: (attrs, arrays)}, each
    with `attrs` and the counters: the replay entries from number `since_entry` on
    (those still in the ring), the resume state (all else but the weights:
    optimiser and target network, emulator, bookkeeping, random generator, and the log,
    so that each kept epoch can be resumed on its own) and the snapshot (the weights)."""
    memory, learner = state.memory, state.learner
    counters = _with_counters(attrs, state)
    start = max(since_entry, memory.added - memory.size)
    env_arrays, env_values = state.player.env.get_state()
    resume = {
        f"learner/{name}/{i:03d}": t.detach().cpu().numpy()
        for name, tensors in learner.state()["tensors"].items()
        for i, t in enumerate(tensors)
    }
    resume.update({f"env/{name}": value for name, value in env_arrays.items()})
    resume.update({f"log/{name}": value for name, value in state.log.arrays().items()})
    return {
        "replay_delta": (
            {**counters, "start": start, "stop": memory.added},
            memory.entries(start, memory.added),
        ),
        "resume_state": (
            {
                **counters,
                "replay_added": memory.added,
                "counters": json.dumps({**asdict(state.counters), **state.player.bookkeeping()}),
                "env": json.dumps(env_values),
                "agent_rng": json.dumps(state.rng.bit_generator.state),
            },
            resume,
        ),
        "snapshot": (
            counters,
            {
                f"weights/{name}": t.detach().cpu().numpy()
                for name, t in learner.network.state_dict().items()
            },
        ),
    }


def load(
    state: TrainingState, snapshot: Read, resume_state: Read, replay_delta: Iterable[Read]
) -> None:
    """The inverse of `save`: put weights, resume state and replay entries back. The
    replay parts, oldest first, must join up from what the memory holds (or from the
    oldest entry the ring keeps) to the entries the resume state counts; a part that
    does not fit this run (another network, optimiser or game) is refused by its file."""
    path, _, arrays = snapshot
    load_weights(path, arrays, state.learner.network)
    path, attrs, arrays = resume_state
    try:
        _load_resume_state(state, attrs, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DataFileError(
            f"{path}: its resume state does not fit this run "
            f"({type(error).__name__}: {' '.join(str(error).split())})"
        ) from None
    memory, added = state.memory, attrs["replay_added"]
    first = max(memory.added, _ring_start(added, memory.capacity))  # the next entry needed
    if (expected := put_replay_deltas(memory, first, replay_delta)) != added:
        raise DataFileError(
            f"{path}: expects replay entries up to {added}, but the replay deltas end at {expected}"
        )


def put_replay_deltas(memory: ReplayMemory, expected: int, replay_delta: Iterable[Read]) -> int:
    """Put replay parts, oldest first, into `memory` from entry `expected` on; return the
    entry after the last one put. Each part is freed before the next is read: one part in
    memory at a time, as `dqn.replay.save_bytes` budgets a resume."""
    for delta_path, delta_attrs, delta in replay_delta:
        start, stop = delta_attrs["start"], delta_attrs["stop"]
        if stop - start != len(delta["frames"]):
            raise DataFileError(
                f"{delta_path}: holds {len(delta['frames'])} replay entries, "
                f"but its start and stop attributes say {stop - start}"
            )
        if stop > expected:
            if start > expected:
                raise DataFileError(
                    f"{delta_path}: starts at replay entry {start}, but entries "
                    f"{expected}..{start - 1} are in no delta file"
                )
            memory.put_entries(expected, {k: v[expected - start :] for k, v in delta.items()})
            expected = stop
        del delta
    return expected


def _load_resume_state(state: TrainingState, attrs: dict, arrays: dict[str, np.ndarray]) -> None:
    tensors: dict[str, list] = {}
    for name in sorted(k for k in arrays if k.startswith("learner/")):
        tensors.setdefault(name.split("/")[1], []).append(arrays[name])
    state.learner.load_state({"tensors": tensors, "updates": attrs["update"]})
    state.player.env.set_state(
        {
            name.removeprefix("env/"): value
            for name, value in arrays.items()
            if name.startswith("env/")
        },
        json.loads(attrs["env"]),
    )
    state.rng.bit_generator.state = json.loads(attrs["agent_rng"])
    counters = json.loads(attrs["counters"])
    state.counters = Counters(epoch=counters.pop("epoch"), step=counters.pop("step"))
    state.player.load_bookkeeping(counters)
    state.log = TrainLog.from_arrays(
        {
            name.removeprefix("log/"): value
            for name, value in arrays.items()
            if name.startswith("log/")
        }
    )


def load_weights(path: Path, arrays: dict[str, np.ndarray], network: torch.nn.Module) -> None:
    """Load the `weights/...` arrays read from file `path` into `network`."""
    weights = {
        name.removeprefix("weights/"): torch.as_tensor(value)
        for name, value in arrays.items()
        if name.startswith("weights/")
    }
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        # torch lists every missing, unexpected and mis-shaped tensor over several lines.
        raise DataFileError(
            f"{path}: its weights do not fit the network ({' '.join(str(error).split())})"
        ) from None


def load_target(path: Path, network: torch.nn.Module) -> dict:
    """Load the target network that resume state `path` holds into `network`, a network
    of its run's kind; return the state's attributes. Refused by name where the state
    holds none (a run without a target network) or holds another network's."""
    attrs, arrays = h5io.read(path, "resume_state")
    values = [arrays[name] for name in sorted(arrays) if name.startswith("learner/target/")]
    if not values:
        raise DataFileError(f"{path}: holds no target network (its run has none)")
    try:
        networks.load_in_order(network, values, "its target network")
    except (ValueError, RuntimeError) as error:  # RuntimeError: a tensor of another shape
        raise DataFileError(f"{path}: {' '.join(str(error).split())}") from None
    return attrs


def load_snapshot(path: Path, network: torch.nn.Module) -> dict:
    """Load the weights of snapshot `path` into `network`; return the snapshot's
    attributes. A damaged file, or weights of another network, is refused by name."""
    attrs, arrays = h5io.read(path, "snapshot")
    load_weights(path, arrays, network)
    return attrs


# -- an epoch's files --
def save_epoch(run: RunDir, attrs: dict, state: TrainingState) -> None:
    epoch = state.counters.epoch
    run.write_epoch(
        epoch,
        save(state, attrs, _end_entry(state, epoch - 1)),
        log=(_with_counters(attrs, state), state.log.arrays()),
    )
    run.prune(epoch, first_delta_needed(state, epoch))


def _with_counters(attrs: dict, state: TrainingState) -> dict:
    """`attrs` and where the run stands, as every file of a checkpoint has them."""
    return {
        **attrs,
        "epoch": state.counters.epoch,
        "step": state.counters.step,
        "update": state.learner.updates,
    }


def _end_entry(state: TrainingState, epoch: int) -> int:
    """The replay entries stored when `epoch` ended (0 for epoch 0, the start)."""
    end_step = state.log.epochs["step"][epoch - 1] if epoch else 0
    return _entries_at(end_step, state.log.episodes["end_step"], state.learner.config)


def _entries_at(step: int, episode_ends, config: Config) -> int:
    """The replay entries stored in a run's first `step` agent steps, `episode_ends` the
    steps its training episodes ended at (the log's, ascending): one a step, but none in
    a step that perceives a terminal (`terminal_takes_step`), the step after each end."""
    return step - bisect.bisect_left(episode_ends, step) if config.terminal_takes_step else step


def _read_epoch(run: RunDir, epoch: int, held: dict, state: TrainingState) -> dict:
    """The files of `epoch` as `load` takes them into `state`'s replay ring (`held`: the
    held-out file's attributes). The replay deltas are read one by one as
    they are loaded, and only those holding entries the ring keeps: an older one, kept
    for a fallback to the epoch before, is not opened (damage there costs this epoch
    nothing)."""
    snapshot = _read_part(run, run.snapshot(epoch), "snapshot", held)
    resume_state = _read_part(run, run.resume_state(epoch), "resume_state", held)
    _, attrs, arrays = resume_state
    added = attrs["replay_added"]
    first = _first_delta(
        arrays["log/epochs/step"],
        arrays["log/episodes/end_step"],
        state.learner.config,
        _ring_start(added, state.memory.capacity),
    )
    return {
        "snapshot": snapshot,
        "resume_state": resume_state,
        "replay_delta": (
            _read_part(run, path, "replay_delta", held) for path in run.replay_deltas(first, epoch)
        ),
    }


def _read_part(run: RunDir, path: Path, kind: str, held: dict) -> Read:
    """File `path` of `kind`, refused where another run than `run` wrote it (a file copied
    in by hand) with RunMismatchError: not damage, which `restore` would set aside."""
    attrs, arrays = h5io.read(path, kind)
    check_same_run(path, attrs, run.heldout, held, RunMismatchError)
    return path, attrs, arrays


def first_delta_needed(state: TrainingState, epoch: int) -> int:
    """The oldest epoch whose replay delta a resume from `epoch`, or from the epoch
    before it (the fallback if `epoch`'s files are damaged), needs: the ring as it stood
    then."""
    oldest_entry = _ring_start(_end_entry(state, epoch - 1), state.memory.capacity)
    log, config = state.log, state.learner.config
    return _first_delta(log.epochs["step"], log.episodes["end_step"], config, oldest_entry)


def _ring_start(added: int, capacity: int) -> int:
    """The oldest entry a ring of `capacity` holds once `added` entries were stored."""
    return max(0, added - capacity)


def _first_delta(epoch_ends, episode_ends, config: Config, oldest_entry: int) -> int:
    """The first epoch whose replay delta holds entry `oldest_entry` or a later one, read
    off the log (the steps its epochs and episodes ended at), not off the deltas: epoch
    k's delta ends at the entries stored by the step epoch k ended at."""
    return 1 + sum(
        1 for end in epoch_ends if _entries_at(end, episode_ends, config) <= oldest_entry
    )


# -- interrupt files --
def save_interrupted(run: RunDir, attrs: dict, state: TrainingState, meter: dict) -> None:
    """Everything since the newest snapshot, in one file written atomically: the parts of
    a checkpoint (their arrays under KIND/...) and `meter`, the record of the epoch so far."""
    _save_since_snapshot(run.interrupt, "interrupted", attrs, state, meter, state.counters.epoch)


def save_diverged(run: RunDir, attrs: dict, state: TrainingState, meter: dict) -> None:
    """As an interrupt file, for a person to inspect (nothing resumes from it): the epoch
    that ended with non-finite values, on top of the newest snapshot."""
    _save_since_snapshot(run.diverged, "diverged", attrs, state, meter, state.counters.epoch - 1)


def _save_since_snapshot(
    path: Path, kind: str, attrs: dict, state: TrainingState, meter: dict, since_epoch: int
) -> None:
    merged = {"meter": json.dumps(meter)}
    arrays = {}
    for part, (part_attrs, part_arrays) in save(
        state, attrs, _end_entry(state, since_epoch)
    ).items():
        merged.update(part_attrs)
        arrays.update({f"{part}/{name}": value for name, value in part_arrays.items()})
    h5io.write(path, kind, merged, arrays, compress=True)


def _read_interrupted(run: RunDir, held: dict) -> tuple[dict, dict]:
    """The run's interrupt file as `load` takes it, and its meter's record of the epoch
    so far."""
    path, attrs, arrays = _read_part(run, run.interrupt, "interrupted", held)
    read = {
        kind: (
            path,
            attrs,
            {
                name.removeprefix(f"{kind}/"): value
                for name, value in arrays.items()
                if name.startswith(f"{kind}/")
            },
        )
        for kind in CHECKPOINT
    }
    read["replay_delta"] = [read["replay_delta"]]
    return read, json.loads(attrs["meter"])


# -- resuming --
def restore(
    run: RunDir, new_state: Callable[[], TrainingState]
) -> tuple[TrainingState, Path | None, dict | None]:
    """The state the run left: the newest epoch, then the interrupt file that continues
    it; or, if the newest epoch's files are damaged, the epoch before it (the run then
    repeats that epoch, exactly, and the files are moved aside by `RunDir.set_aside`).
    A file this process cannot read now (`FileAccessError`) stops it, and moves nothing.
    Returns the state, the file resumed from (None: nothing to resume) and the meter's
    record of the epoch in progress (None unless from an interrupt file)."""
    state = new_state()
    held = h5io.read_attrs(run.heldout, "heldout")
    if run.interrupt.exists():  # refused now, not mistaken for a damaged epoch below
        h5io.read_attrs(run.interrupt, "interrupted")
    epochs = run.snapshot_epochs()
    if not epochs:
        run.prune(0, 0)  # keeps only an interrupt file from before the first snapshot
    else:
        previous = epochs[-1] - 1
        try:
            load(state, **_read_epoch(run, epochs[-1], held, state))
            damage = None
        except FileAccessError:  # no sign of damage (dqn.errors): stop, set nothing aside
            raise
        except DataFileError as error:
            if previous and not run.resume_state(previous).exists():
                raise
            # Its message only: the exception's traceback holds `load`'s frames, and with
            # them this state's replay memory, which must go before a second one is made.
            damage = str(error)
        if damage is not None:
            del state
            state = new_state()
            if previous:
                try:
                    load(state, **_read_epoch(run, previous, held, state))
                except DataFileError as second:
                    fault = (
                        "cannot be read now"
                        if isinstance(second, FileAccessError)
                        else "is damaged too"
                    )
                    raise type(second)(
                        f"{damage}; and epoch {previous}, the fallback, {fault}: {second}"
                    ) from None
            aside = run.set_aside(epochs[-1])
            LOG.warning(
                f"{damage}; so epoch {epochs[-1]}'s files are moved to {aside} (delete them "
                f"once checked): continuing from "
                f"{'epoch ' + str(previous) if previous else 'the start'} instead"
            )
            if not previous:
                run.prune(0, 0)
                return state, None, None
            epochs = [previous]
        # Only once the epoch is back: a damaged file found while pruning is no reason to
        # give up an epoch (and the fallback must not delete the epoch it falls back from
        # before it has succeeded).
        run.prune(epochs[-1], first_delta_needed(state, epochs[-1]))
    if run.interrupt.exists():
        read, epoch_in_progress = _read_interrupted(run, held)
        load(state, **read)
        return state, run.interrupt, epoch_in_progress
    return state, (run.snapshot(epochs[-1]) if epochs else None), None


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
    h5io.write(
        run.completion,
        "complete",
        {
            **attrs,
            "epoch": epoch,
            "step": snapshot["step"],
            "update": snapshot["update"],
            "snapshot": str(run.snapshot(epoch).relative_to(run.root)),
        },
        {},
    )
