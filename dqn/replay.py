"""Experience replay (2013 §4): a ring of single 84x84 frames, stacks rebuilt at sample time.

Entry t holds the frame the agent saw at step t, the action it took, the unclipped
reward that followed and whether the episode ended there, plus whether frame t is the
first of an episode. The state of entry t is frames t-3..t; its next state is frames
t-2..t+1. Storing each frame once makes a 1M-transition memory ~7.1 GB instead of 28 GB
(4-frame stacks) or 56 GB (state pairs).

Frames before an episode's first frame are zeroed when a stack is rebuilt, so a stack
never mixes two episodes (the environment pads its own stack the same way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dqn.errors import ConfigError
from dqn.frames import HISTORY_FRAMES
from dqn.layouts import REPLAY_COLUMNS as COLUMNS
from dqn.presets import Config
from dqn.provenance import usable_memory


@dataclass
class Minibatch:
    states: np.ndarray  # (B, 4, 84, 84) uint8
    actions: np.ndarray  # (B,) int64
    rewards: np.ndarray  # (B,) float32, unclipped
    next_states: np.ndarray  # (B, 4, 84, 84) uint8
    terminals: np.ndarray  # (B,) bool


ENTRY_BYTES = sum(
    np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape in COLUMNS.values()
)


def save_bytes(entries: int) -> int:
    """Memory a save of `entries` replay entries takes beside the ring: their copy
    (`ReplayMemory.entries`) and the compressed file `dqn.h5io.write` builds from it in
    memory, at worst (frames that do not compress) a little larger than the copy."""
    return math.ceil(2.2 * entries * ENTRY_BYTES)


def training_bytes(config: Config) -> int:
    """Memory the replay takes in a training run: the ring, and its largest save, the
    first epoch's. Each epoch's save, and the interrupt file a signal makes, hold the
    entries added since the last snapshot (a resume reads them back, one save at a time);
    the first epoch's holds the replay start's too (`Config.first_epoch_end_step`). Each
    step counted an entry: with `terminal_takes_step`, a little more than it holds."""
    capacity, steps = config.replay_capacity_transitions, config.train_steps
    return capacity * ENTRY_BYTES + save_bytes(min(config.first_epoch_end_step, steps, capacity))


def check_fits_in_memory(config: Config) -> None:
    """Refuse, before any work, a replay memory and its saves, or the random play the
    held-out states are drawn from (a memory of its own, freed before training), larger
    than the memory this process may use (`dqn.provenance.usable_memory`)."""
    _refuse_above(
        f"replay_capacity_transitions={config.replay_capacity_transitions}: the replay "
        "memory and a save of its first epoch's entries need",
        training_bytes(config),
    )
    _refuse_above(
        f"heldout_collect_steps={config.heldout_collect_steps}: the random play the "
        "held-out states are drawn from needs",
        config.heldout_collect_steps * ENTRY_BYTES,
    )


def _refuse_above(what: str, need: int) -> None:
    have = usable_memory()
    if need > have:
        raise ConfigError(
            f"{what} {need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB this "
            "process may use (the machine's, or its control group's limit: a SLURM job's --mem)"
        )


class ReplayMemory:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.frames, self.actions, self.rewards, self.terminals, self.episode_starts = (
            np.zeros((capacity, *shape), dtype) for dtype, shape in COLUMNS.values()
        )
        self.added = 0  # entries ever added; the next one goes to slot added % capacity

    @property
    def size(self) -> int:
        return min(self.added, self.capacity)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._columns().values())

    def _columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in COLUMNS}

    def store(self, step) -> None:
        """Add the entry of a played step (a `dqn.play.Step`): the frame it was taken
        from, the action and what followed. The newest entry is never drawn: its next
        state ends with the frame of the entry after it."""
        slot = self.added % self.capacity
        self.frames[slot] = step.frame
        self.episode_starts[slot] = step.episode_start
        self.actions[slot] = step.action
        self.rewards[slot] = step.reward
        self.terminals[slot] = step.terminal
        self.added += 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> Minibatch:
        """Draw `batch_size` transitions uniformly (2013 Algorithm 1) with replacement.

        Valid entries have a successor (the newest has none yet) and, once the ring has
        wrapped, three older frames still in the ring (the oldest three do not).
        """
        if self.added < self.capacity:
            low, high = 0, self.added - 1  # entry 0 is an episode start: no history needed
        else:
            low, high = HISTORY_FRAMES - 1, self.capacity - 1
        if high - low < 1:
            raise ValueError(f"replay memory holds {self.added} entries: too few to sample")
        age = rng.integers(low, high, size=batch_size)
        oldest = self.added - self.size
        indices = (oldest + age) % self.capacity
        # Frames t-3 .. t+1: the state is the first four, the next state the last four.
        # Each is gathered on its own (it is masked at its own episode start).
        window = (indices[:, None] + np.arange(-HISTORY_FRAMES + 1, 2)) % self.capacity
        starts = self.episode_starts[window]
        states = self.frames[window[:, :HISTORY_FRAMES]]
        next_states = self.frames[window[:, 1:]]
        _zero_before_episode_start(states, starts[:, :HISTORY_FRAMES])
        _zero_before_episode_start(next_states, starts[:, 1:])
        return Minibatch(
            states=states,
            actions=self.actions[indices].astype(np.int64),
            rewards=self.rewards[indices],
            next_states=next_states,
            terminals=self.terminals[indices],
        )

    # -- resume: the entries added between two counts, and putting them back --
    def entries(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Copies of entries number start..stop-1 (all still in the ring)."""
        if not self.added - self.size <= start <= stop <= self.added:
            raise ValueError(f"entries {start}..{stop} are not in the ring")
        slots = np.arange(start, stop) % self.capacity
        return {name: column[slots] for name, column in self._columns().items()}

    def put_entries(self, start: int, columns: dict[str, np.ndarray]) -> None:
        """Write entries number start.. back into their slots and advance `added`."""
        count = len(columns["frames"])
        slots = np.arange(start, start + count) % self.capacity
        for name, column in self._columns().items():
            column[slots] = columns[name]
        self.added = max(self.added, start + count)


def _zero_before_episode_start(stacks: np.ndarray, starts: np.ndarray) -> None:
    """Zero frame j of each stack if a later frame of the stack starts an episode."""
    later_start = np.flip(np.cumsum(np.flip(starts[:, 1:], axis=1), axis=1), axis=1) > 0
    stacks[:, :-1][later_start] = 0
