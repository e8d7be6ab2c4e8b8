"""The training log: one row per training episode and one per epoch, saved as
train_log.h5 with every epoch (the record of truth of a run's training); and the
counters of where a run stands, which its rows record."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dqn.layouts import EPISODE_COLUMNS, EPOCH_COLUMNS
from dqn.play import Episode


@dataclass
class Counters:
    """Where a run stands."""

    epoch: int = 0  # epochs completed
    step: int = 0  # agent steps taken in training


@dataclass
class TrainLog:
    episodes: dict[str, list] = field(default_factory=lambda: {n: [] for n in EPISODE_COLUMNS})
    epochs: dict[str, list] = field(default_factory=lambda: {n: [] for n in EPOCH_COLUMNS})

    def add_episode(self, episode: Episode, end_step: int, epoch: int) -> None:
        """A training episode that ended at agent step `end_step`, during epoch `epoch`
        (counted from 1). `game_over` tells a whole game's end from a lost life's (Nature),
        so that a game's return is the sum of its episodes up to one that ends it."""
        row = {
            "return": episode.total_reward,
            "length_steps": episode.steps,
            "end_step": end_step,
            "epoch": epoch,
            "game_over": episode.game_over,
        }
        for name, value in row.items():
            self.episodes[name].append(value)

    def add_epoch(self, row: dict) -> None:
        for name, value in row.items():
            self.epochs[name].append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            f"{group}/{name}": np.asarray(values, columns[name])
            for group, columns in (("episodes", EPISODE_COLUMNS), ("epochs", EPOCH_COLUMNS))
            for name, values in getattr(self, group).items()
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TrainLog:
        """The inverse of `arrays`."""
        log = cls()
        for group in ("episodes", "epochs"):
            table = getattr(log, group)
            for name in table:
                table[name] = arrays[f"{group}/{name}"].tolist()
        return log
