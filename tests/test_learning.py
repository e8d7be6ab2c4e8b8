"""The learning test: the unchanged `dqn train` loop, replay memory, learner, snapshots
and `dqn evaluate` learn Catch (dqn/catch.py), whose optimum is known: +1 an episode,
against about -0.6 for a random policy. Each learning rule trains from scratch, on one
CPU thread, deterministically (the same numbers on every run of the same build)."""

import subprocess
import sys

import numpy as np
import pytest

from dqn import h5io, presets

RULES = {
    # the 2013 method as the preset has it: no target network, squared error
    "2013": [],
    # the Nature learning rule on the same task: a target network and the Huber loss
    "Nature": ["target_update_period_updates=250", "loss=huber"],
}


def train_and_evaluate(tmp_path, game, preset, overrides):
    run, evaluation = tmp_path / "run", tmp_path / "evaluation.h5"
    dqn = [sys.executable, "-m", "dqn.cli"]
    sets = [f"--set={item}" for item in overrides]
    for command in (["train", "--game", game, "--preset", preset, "--seed", "0",
                     "--out", str(run), "--progress-s", "60", *sets],
                    ["evaluate", "--run", str(run), "--out", str(evaluation)]):
        done = subprocess.run([*dqn, *command, "--device", "cpu", "--threads", "1"],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
    return h5io.read(evaluation, "evaluation")[1]


@pytest.mark.parametrize("rule", RULES)
def test_catch_is_learned_to_near_its_optimum(tmp_path, rule):
    table = train_and_evaluate(tmp_path, "Catch", "catch", RULES[rule])
    config = presets.load("catch", RULES[rule])
    rewards, max_q = table["average_reward"], table["average_max_q"]
    # The first snapshot still plays badly; the final one (epsilon = 0.05) catches
    # at least 9 balls in 10.
    assert rewards[0] < 0.5 and rewards[-1] >= 0.8, rewards
    # The values stay near those of one reward of +-1 (an early overshoot aside: a run
    # away bootstrap would climb towards 1 / (1 - discount)), and end near the optimum's
    # discounted return: the catch comes 9 steps after the first state.
    assert np.all(np.abs(max_q) <= 1.5), max_q
    assert max_q[-1] > 0.5 * config.discount ** 8, max_q


def test_the_2013_values_stay_bounded_on_seaquest(tmp_path):
    # The quick preset's Seaquest for two epochs of 1,400 updates. With clipped rewards
    # and discount gamma, no value can exceed 1 / (1 - gamma) unless the bootstrap has
    # run away, as it did with DQN 3.0's constants taken without its error clipping
    # (average max-Q 15,037 after the first epoch; README, "The 2013 preset").
    overrides = ["train_steps=3_800"]
    table = train_and_evaluate(tmp_path, "Seaquest", "quick", overrides)
    config = presets.load("quick", overrides)
    max_q = table["average_max_q"]
    assert len(max_q) == 2
    assert np.all((max_q >= -1) & (max_q <= 1 / (1 - config.discount))), max_q
