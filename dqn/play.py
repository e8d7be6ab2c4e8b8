"""Playing an environment: the one episode loop of the project.

Training, evaluation, the Figure 3 trace, the held-out collection and the benchmark all
step their environment through a `Player`, which owns what an episode loop does besides
choosing actions: it starts the next episode when one ends and counts each episode's
return and length. Training interleaves its steps with updates itself but calls the
same `Player.step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Environment(Protocol):
    """What a player needs of an environment (`dqn.games.make_env`'s, or any other):
    the agent's view of it, its actions, and its episodes."""

    n_actions: int
    stack: np.ndarray  # the agent's state phi
    game_over: bool

    @property
    def frame(self) -> np.ndarray: ...

    def new_episode(self) -> np.ndarray: ...

    def step(self, action: int) -> tuple[float, bool]: ...


Policy = Callable[[Environment], int]  # the action to take in the environment's current state


@dataclass(frozen=True)
class Episode:
    """A finished episode: its unclipped total reward, its length, and whether it ended
    the game (Nature ends a training episode at a lost life, which does not)."""

    total_reward: float
    steps: int
    game_over: bool


@dataclass(frozen=True)
class Step:
    """One agent step: the frame and state flag it was taken from, what was done and
    what followed, and the episode it finished, if it finished one."""

    frame: np.ndarray  # the newest 84x84 frame of the state acted in (a copy)
    episode_start: bool  # whether that frame is the first of its episode
    action: int
    reward: float  # unclipped
    terminal: bool
    episode: Episode | None


class Player:
    """One environment played step by step, with the bookkeeping of its episodes."""

    def __init__(self, env: Environment, start: bool = True):
        """`start`: begin the first episode now; a resumed run restores the
        environment's state and `load_state`s the bookkeeping instead."""
        self.env = env
        self.episode_return = 0.0  # unclipped return of the episode in progress
        self.episode_steps = 0
        self.starts_episode = True  # whether the current frame is its episode's first
        if start:
            self.start()

    def start(self) -> None:
        """Begin the first episode."""
        self.env.new_episode()

    def step(self, action: int) -> Step:
        """Play `action`; when the episode ends, count it and begin the next one."""
        frame, episode_start = self.env.frame.copy(), self.starts_episode
        reward, terminal = self.env.step(action)
        self.episode_return += reward
        self.episode_steps += 1
        self.starts_episode = terminal
        finished = None
        if terminal:
            finished = Episode(self.episode_return, self.episode_steps, self.env.game_over)
            self.episode_return, self.episode_steps = 0.0, 0
            self.env.new_episode()
        return Step(frame, episode_start, action, reward, terminal, finished)

    def run(self, policy: Policy, max_steps: int, max_episodes: int = 0) -> Iterator[Step]:
        """Play `policy` for `max_steps` steps, or until `max_episodes` episodes have
        finished (0: no limit), yielding each step."""
        finished = 0
        for _ in range(max_steps):
            step = self.step(policy(self.env))
            yield step
            finished += step.episode is not None
            if max_episodes and finished == max_episodes:
                return

    # -- resume --
    def bookkeeping(self) -> dict:
        """The episodes' bookkeeping, for the resume state."""
        return {
            "episode_return": self.episode_return,
            "episode_steps": self.episode_steps,
            "starts_episode": self.starts_episode,
        }

    def load_bookkeeping(self, values: dict) -> None:
        """The inverse of `bookkeeping`."""
        self.episode_return = float(values["episode_return"])
        self.episode_steps = int(values["episode_steps"])
        self.starts_episode = bool(values["starts_episode"])


def random_policy(rng: np.random.Generator) -> Policy:
    """A uniform random action each step (replay start, the held-out states' play)."""
    return lambda env: int(rng.integers(env.n_actions))
