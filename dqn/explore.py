"""Exploration: the epsilon schedule and epsilon-greedy action choice (2013 §5)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dqn.presets import Config


def epsilon(config: Config, step: int) -> float:
    """Epsilon at agent step `step` of training.

    1 during replay start (a uniform random policy), then linear from epsilon_start to
    epsilon_end over epsilon_anneal_steps, then constant. The anneal counts from the end
    of replay start, as DQN 3.0 does (NeuralQLearner: ep_endt after learn_start), or
    from step 0, as Stable-Baselines3 does (its schedule runs through learning_starts,
    where it acts at random anyway), by epsilon_anneal_from.
    """
    if step < config.replay_start_steps:
        return 1.0
    if config.epsilon_anneal_steps == 0:
        return config.epsilon_end
    origin = config.replay_start_steps if config.epsilon_anneal_from == "replay_start" else 0
    progress = min(1.0, (step - origin) / config.epsilon_anneal_steps)
    return config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)


def greedy(q_values: np.ndarray) -> int:
    """argmax_a Q(phi, a); ties go to the lowest index."""
    return int(np.argmax(q_values))


def choose_action(
    eps: float, n_actions: int, rng: np.random.Generator, greedy_action: Callable[[], int]
) -> int:
    """With probability eps a uniform random action, else `greedy_action()`.

    The network is only run when the greedy action is needed.
    """
    if rng.random() < eps:
        return int(rng.integers(n_actions))
    return greedy_action()
