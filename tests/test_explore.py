import numpy as np
import pytest

from dqn import presets
from dqn.explore import choose_action, epsilon


def test_epsilon_is_one_during_replay_start_then_anneals_linearly_then_stays():
    config = presets.load("nature2015")  # DQN 3.0: the anneal counted from learn_start
    assert epsilon(config, 0) == 1.0
    assert epsilon(config, 49_999) == 1.0
    assert epsilon(config, 50_000) == 1.0
    assert epsilon(config, 550_000) == pytest.approx(0.55)
    assert epsilon(config, 1_050_000) == pytest.approx(0.1)
    assert epsilon(config, 9_000_000) == pytest.approx(0.1)


def test_epsilon_annealed_from_step_0_is_still_one_during_replay_start():
    # The 2013 paper's "over the first million frames" and Stable-Baselines3's schedule:
    # the anneal's count starts at step 0, so learning after a replay start of 50k starts
    # at 1 - 0.9 * 50k/1M = 0.955 and epsilon reaches 0.1 at 1M, not 1.05M.
    config = presets.load("paper2013", ["replay_start_steps=50000"])
    assert config.epsilon_anneal_from == "step_0"
    assert epsilon(config, 49_999) == 1.0
    assert epsilon(config, 50_000) == pytest.approx(0.955)
    assert epsilon(config, 500_000) == pytest.approx(0.55)
    assert epsilon(config, 1_000_000) == pytest.approx(0.1)
    assert epsilon(config, 2_000_000) == pytest.approx(0.1)


def test_choose_action_calls_the_network_only_when_greedy():
    rng = np.random.default_rng(0)
    calls = []
    greedy_action = lambda: calls.append(1) or 7  # noqa: E731
    actions = [choose_action(0.05, 4, rng, greedy_action) for _ in range(10_000)]
    share_random = 1 - len(calls) / 10_000
    assert share_random == pytest.approx(0.05, abs=0.01)
    assert set(actions) == {0, 1, 2, 3, 7}
    assert all(choose_action(1.0, 4, rng, greedy_action) < 4 for _ in range(100))
