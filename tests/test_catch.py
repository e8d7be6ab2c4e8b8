import numpy as np
import pytest

from dqn import presets
from dqn.catch import COLUMNS, ROWS, Catch, optimal_values
from dqn.errors import ConfigError
from dqn.games import check_game, make_env

CONFIG = presets.load("catch")
LEFT, STAY, RIGHT = 0, 1, 2


def play(env, policy):
    """One episode; the rewards of its steps."""
    env.new_episode()
    return rewards_to_the_end(env, policy)


def rewards_to_the_end(env, policy):
    """The rewards of playing on from the game's state to the end of its episode."""
    rewards, terminal = [], env.ball_row == ROWS - 1
    while not terminal:
        reward, terminal = env.step(policy(env))
        rewards.append(reward)
    return rewards


def follow_the_ball(env):
    return STAY + int(np.sign(env.ball_column - env.paddle_column))


def test_an_episode_is_nine_steps_and_pays_one_at_the_end():
    env = Catch(CONFIG, seed=0)
    for _ in range(20):
        rewards = play(env, follow_the_ball)
        assert rewards == [0.0] * (ROWS - 2) + [1.0]  # the ball falls from row 0 to row 9


def test_a_miss_pays_minus_one_and_the_paddle_stops_at_the_walls():
    env = Catch(CONFIG, seed=1)
    env.new_episode()
    env.ball_column = COLUMNS - 1
    for _ in range(ROWS - 1):
        reward, terminal = env.step(LEFT)
    assert env.paddle_column == 0 and (reward, terminal) == (-1.0, True)


def test_a_random_policy_scores_about_minus_0_6():
    env, rng = Catch(CONFIG, seed=2), np.random.default_rng(0)
    returns = [sum(play(env, lambda _: int(rng.integers(3)))) for _ in range(2000)]
    assert np.mean(returns) == pytest.approx(-0.6, abs=0.06)


def test_frames_draw_ball_and_paddle_as_84x84_blocks_and_stack_like_atari():
    env = make_env("Catch", CONFIG, seed=3)
    stack = env.new_episode()
    assert stack.shape == (4, 84, 84) and stack.dtype == np.uint8
    assert not stack[:3].any()  # zeros before the episode's first frame
    # A cell is 84/10 rows by 84/5 columns: the top row of cells is pixel rows 0-8, the
    # bottom one rows 76-83; the middle column of cells is pixel columns 34-50.
    env.ball_column = 2
    env.step(STAY)  # the ball falls to cell row 1: pixel rows 9-16
    expected = np.zeros((84, 84), np.uint8)
    expected[9:17, 34:51] = 255
    expected[76:84, 34:51] = 255
    np.testing.assert_array_equal(env.frame, expected)
    before = env.frame.copy()
    env.step(LEFT)
    np.testing.assert_array_equal(env.stack[-2], before)  # the stack moves on by one
    assert env.frame[76:84, 17:34].all() and not env.frame[76:84, 34:51].any()  # column 1


def test_state_round_trip_continues_identically():
    env = Catch(CONFIG, seed=4)
    env.new_episode()
    env.step(RIGHT)
    state = env.get_state()
    actions = [0, 2, 1, 1, 0, 2, 2]
    first = [(env.step(a), env.stack.copy()) for a in actions]
    other = Catch(CONFIG, seed=99)
    other.set_state(*state)
    second = [(other.step(a), other.stack.copy()) for a in actions]
    for (outcome1, stack1), (outcome2, stack2) in zip(first, second):
        assert outcome1 == outcome2
        np.testing.assert_array_equal(stack1, stack2)
    env.new_episode()
    other.new_episode()
    assert env.ball_column == other.ball_column  # the same generator state


def test_optimal_values_are_the_returns_of_following_the_ball_and_no_policy_beats_them():
    # From states reached by random play, the discounted return of following the ball
    # is the closed form's V*, for a catch still in reach and for a miss that is not;
    # random play on from the same states never gets more.
    env, rng = Catch(CONFIG, seed=5), np.random.default_rng(1)
    states, best, random_returns = [], [], []

    def play_randomly(_):
        return int(rng.integers(3))

    for _ in range(300):
        env.new_episode()
        for _ in range(rng.integers(ROWS)):  # 0 to 9 random steps: the last one ends it
            env.step(int(rng.integers(3)))
        states.append(env.stack.copy())
        state = env.get_state()
        for policy, returns in ((follow_the_ball, best), (play_randomly, random_returns)):
            env.set_state(*state)
            rewards = rewards_to_the_end(env, policy)
            returns.append(sum(CONFIG.discount**i * r for i, r in enumerate(rewards)))
    values = optimal_values(np.stack(states), CONFIG.discount)
    np.testing.assert_allclose(values, best, rtol=0, atol=1e-12)
    assert np.all(np.asarray(random_returns) <= values + 1e-12)
    # every kind of state came up: a catch in reach, a miss, an ended episode
    assert (values > 0).any() and (values < 0).any() and (values == 0).any()


def test_optimal_values_refuse_a_frame_catch_does_not_draw():
    env = Catch(CONFIG, seed=6)
    states = np.stack([env.new_episode().copy(), env.new_episode().copy()])
    states[1, -1, 40, 40] = 255  # a stray pixel in the second state
    with pytest.raises(ValueError, match="state 1 is not a frame Catch draws"):
        optimal_values(states, CONFIG.discount)


def test_unknown_game_lists_every_game():
    with pytest.raises(
        ConfigError, match="unknown game 'Tetris'; valid games: .*SpaceInvaders, Catch"
    ):
        check_game("Tetris")
