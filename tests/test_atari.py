import cv2
import gymnasium as gym
import numpy as np
import pytest

from dqn import presets
from dqn.atari import CROP_TOP_ROW, Atari, frame_skip
from dqn.errors import ConfigError
from dqn.games import PAPER_GAMES, check_game

PAPER = presets.load("paper2013")
NATURE = presets.load("nature2015")


def area_average(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """DQN 3.0's shrink (Scale.lua:25: image.scale(x, 84, 84, 'bilinear')), from what
    torch/image's scaleLinear_rowcol does when the output is smaller: each output pixel
    is the mean of the input pixels it covers, a pixel at its edge weighted by the part
    covered; rows and columns apart. Rounded to grey levels."""

    def weights(n_out, n_in):
        scale = n_in / n_out
        edges = np.arange(n_out + 1) * scale
        pixel = np.arange(n_in)
        covered = np.clip(
            np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, 1
        )
        return covered / scale

    return np.rint(weights(rows, image.shape[0]) @ image @ weights(cols, image.shape[1]).T)


def dqn3_frame(screen: np.ndarray) -> np.ndarray:
    return area_average(screen.astype(np.float64), 84, 84)


def bilinear(screen: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """deep_q_rl's shrink for the 2013 method (ale_experiment.py:165-182)."""
    return cv2.resize(screen, (cols, rows), interpolation=cv2.INTER_LINEAR)


def test_state_is_four_84x84_uint8_frames_zero_padded_at_episode_start():
    env = Atari("Breakout", PAPER, seed=0)
    state = env.new_episode()
    assert state.shape == (4, 84, 84) and state.dtype == np.uint8
    assert not state[:3].any() and state[3].any()
    env.step(1)
    assert not state[:2].any() and state[2].any() and state[3].any()


def test_2013_frame_is_the_110x84_downsample_cropped_at_the_playing_area():
    env = Atari("Breakout", PAPER, seed=0)
    env.new_episode()
    for _ in range(10):
        env.step(1)
    screen = env.ale.getScreenGrayscale()
    expected = bilinear(screen, 110, 84)[CROP_TOP_ROW : CROP_TOP_ROW + 84]
    np.testing.assert_array_equal(env.frame, expected)
    # The crop drops the score line: Breakout's score digits lie in screen rows 5..15.
    assert CROP_TOP_ROW * 210 / 110 > 16


def test_nature_frame_is_max_of_last_two_screens_resized_to_84x84():
    env = Atari("SpaceInvaders", NATURE, seed=0)
    env.new_episode()
    for _ in range(5):
        env.step(0)
    before = env.ale.cloneState(include_rng=True)
    env.step(1)
    got = env.frame.copy()
    # Replay the same step by hand on a second emulator from the same state.
    env.ale.restoreState(before)
    screens = []
    for _ in range(env.frame_skip):
        env.ale.act(env.actions[1])
        screens.append(env.ale.getScreenGrayscale())
    # As DQN 3.0 shrinks (a grey level apart at most: OpenCV rounds where it truncates)
    expected = dqn3_frame(np.maximum(screens[-1], screens[-2]))
    assert np.abs(got - expected).max() <= 1


def test_nature_frames_are_shrunk_as_dqn3_shrinks_them_not_bilinearly():
    # 210 rows into 84: bilinear interpolation gives every fifth screen row no weight
    # (a line one row high there vanishes), DQN 3.0's average weighs every row.
    env = Atari("Breakout", NATURE, seed=0)
    env.new_episode()
    rng = np.random.default_rng(0)
    worst = {"ours": 0, "bilinear": 0}
    for _ in range(100):
        env.step(int(rng.integers(len(env.actions))))
        pooled = np.maximum(*env._screens)  # the two screens the frame was made of
        expected = dqn3_frame(pooled)
        worst["ours"] = max(worst["ours"], np.abs(env.frame - expected).max())
        worst["bilinear"] = max(
            worst["bilinear"], np.abs(bilinear(pooled, 84, 84) - expected).max()
        )
    assert worst["ours"] <= 1 and worst["bilinear"] > 20, worst
    # A run begun before nature2015 shrank so reads as resize=bilinear, and plays on so.
    old = Atari("Breakout", NATURE.with_values(resize="bilinear"), seed=0)
    old.new_episode()
    old.step(1)
    np.testing.assert_array_equal(old.frame, bilinear(np.maximum(*old._screens), 84, 84))
    line = np.zeros((210, 160), np.uint8)
    line[7] = 255  # covered by frame row 2 (rows 5 to 7.5) and 3 (7.5 to 10), half each
    np.testing.assert_array_equal(dqn3_frame(line)[2:4, 0], [51, 51])  # 255 * 0.5 / 2.5
    assert not bilinear(line, 84, 84).any()


def test_reward_is_the_sum_over_skipped_frames():
    env = Atari("Pong", PAPER, seed=3)
    env.new_episode()
    rng = np.random.default_rng(0)
    total_ours = total_raw = 0.0
    for _ in range(400):
        action = int(rng.integers(env.n_actions))
        state = env.ale.cloneState(include_rng=True)
        raw = 0.0
        for _ in range(env.frame_skip):
            raw += env.ale.act(env.actions[action])
            if env.ale.game_over():
                break
        env.ale.restoreState(state)
        reward, terminal = env.step(action)
        assert reward == raw
        total_ours, total_raw = total_ours + reward, total_raw + raw
        if terminal:
            env.new_episode()
    assert total_raw != 0  # Pong scores within 400 random steps: the sums were exercised


def test_frame_skip_is_3_on_space_invaders_in_2013_and_4_elsewhere():
    assert frame_skip("SpaceInvaders", PAPER) == 3
    assert frame_skip("Breakout", PAPER) == 4
    assert frame_skip("SpaceInvaders", NATURE) == 4
    env = Atari("SpaceInvaders", PAPER, seed=0)
    env.new_episode()
    frames_before = env.ale.getEpisodeFrameNumber()
    env.step(0)
    assert env.ale.getEpisodeFrameNumber() - frames_before == 3


@pytest.mark.parametrize(
    "game,n_actions,n_xitari",
    [
        ("BeamRider", 9, 9),
        ("Breakout", 4, 4),
        ("Enduro", 9, 9),
        ("Pong", 6, 3),
        ("Qbert", 6, 6),
        ("Seaquest", 18, 18),
        ("SpaceInvaders", 6, 6),
    ],
)
def test_minimal_action_set_of_ale_py_and_of_xitari(game, n_actions, n_xitari):
    ale_py, xitari = Atari(game, PAPER, seed=0), Atari(game, NATURE, seed=0)
    assert (PAPER.action_set, NATURE.action_set) == ("ale_py", "xitari")
    assert (ale_py.n_actions, xitari.n_actions) == (n_actions, n_xitari)
    if game == "Pong":  # DQN 3.0's Pong: Xitari games/supported/Pong.cpp, isMinimal
        assert xitari.action_names == ["NOOP", "RIGHT", "LEFT"]


def test_same_seed_same_frames_and_the_emulator_matches_gymnasium():
    def frames(seed):
        env = Atari("Seaquest", NATURE, seed=seed)
        out = [env.new_episode().copy()]
        rng = np.random.default_rng(1)
        for _ in range(200):
            reward, terminal = env.step(int(rng.integers(env.n_actions)))
            out.append(env.stack.copy())
        return np.array(out)

    np.testing.assert_array_equal(frames(7), frames(7))
    assert not np.array_equal(frames(7), frames(8))  # the no-op start length is seeded

    # Our emulator settings are gymnasium's ALE/<Game>-v5 without sticky actions.
    gym_env = gym.make(
        "ALE/Breakout-v5",
        obs_type="grayscale",
        frameskip=1,
        repeat_action_probability=0.0,
        full_action_space=False,
    )
    gym_obs, _ = gym_env.reset(seed=5)
    env = Atari("Breakout", PAPER, seed=5)  # our emulator as Atari sets it up
    env.ale.reset_game()
    np.testing.assert_array_equal(env.ale.getScreenGrayscale(), gym_obs)
    for action in [1, 2, 2, 3, 0, 1, 2] * 10:
        gym_obs, *_ = gym_env.step(action)
        env.ale.act(env.actions[action])
        np.testing.assert_array_equal(env.ale.getScreenGrayscale(), gym_obs)


def test_life_loss_ends_training_episodes_only_in_nature():
    def episode_lengths(config, evaluation):
        env = Atari("Breakout", config, seed=0, evaluation=evaluation)
        env.new_episode()
        lengths, steps = [], 0
        while len(lengths) < 2:
            _, terminal = env.step(1)
            steps += 1
            if terminal:
                lengths.append((steps, env.ale.lives(), env.ale.game_over()))
                steps = 0
                env.new_episode()
        return lengths

    first, _ = episode_lengths(NATURE, evaluation=False)
    assert first[1] == 4 and not first[2]  # one life lost, game goes on
    first, _ = episode_lengths(NATURE, evaluation=True)
    assert first[2]  # evaluation plays whole games
    first, _ = episode_lengths(PAPER, evaluation=False)
    assert first[2]


def test_fire_on_reset_serves_breakouts_ball_at_each_training_episode():
    def lives_after_noop_episodes(config, episodes=3, max_steps=300):
        """Lives left after each training episode played with NOOP only: the paddle stays,
        so a served ball is soon lost; an unserved one waits (at most max_steps steps)."""
        env = Atari("Breakout", config, seed=0)
        lives = []
        for _ in range(episodes):
            env.new_episode()
            for _ in range(max_steps):
                if env.step(0)[1]:
                    break
            lives.append(env.ale.lives())
        return lives

    assert lives_after_noop_episodes(NATURE) == [5, 5, 5]  # the ball waits for FIRE
    assert lives_after_noop_episodes(NATURE.with_values(fire_on_reset=True)) == [4, 3, 2]


def test_no_op_starts_in_each_mode_count_their_unit_at_the_right_episode_starts():
    def frames_run_by_new_episode(config, lives_lost=6):
        """Emulator frames inside each new_episode: the game's start, then after each lost
        life (the agent presses FIRE only, so the paddle stays and the ball is lost)."""
        env = Atari("Breakout", config, seed=0)
        env.new_episode()
        frames = [env.ale.getFrameNumber()]
        for _ in range(lives_lost):
            while not env.step(1)[1]:
                pass
            before = env.ale.getFrameNumber()
            env.new_episode()
            frames.append(env.ale.getFrameNumber() - before)
        return frames

    dqn3 = frames_run_by_new_episode(NATURE)
    steps = frames_run_by_new_episode(NATURE.with_values(noop_start="steps"))
    at_reset = frames_run_by_new_episode(NATURE.with_values(noop_start="frames_at_reset"))
    # the same first draw, k in 1..30: k frames after the reset, or k steps of 4 frames
    assert 1 <= dqn3[0] <= 30 and steps[0] == 4 * dqn3[0] and at_reset[0] == dqn3[0]
    # DQN 3.0: newGame's null frame, then k more, after each lost life (5 lives, then a
    # new game: its reset takes no frame, so k alone); the phase is any of 0..3
    assert all(2 <= n <= 31 for n in dqn3[1:5]) and 1 <= dqn3[5] <= 30
    assert len({n % 4 for n in dqn3[1:]}) > 1
    assert all(n % 4 == 0 and 4 <= n <= 120 for n in steps[1:]) and len(set(steps[1:])) > 1
    assert at_reset[1:5] == [4, 4, 4, 4]  # Baselines: one no-op step past each lost life


def test_an_episodes_first_frame_is_the_max_of_its_last_two_no_op_frames_as_dqn3s():
    def first_frame_and_screens(config):
        """The first frame of the first episode, and the grey screens of the no-op
        frames that led to it, replayed frame by frame from the reset."""
        env = Atari("SpaceInvaders", config, seed=0)
        draws = np.random.Generator(np.random.PCG64())
        draws.bit_generator.state = env.rng.bit_generator.state
        env.new_episode()
        first = env.frame.copy()
        k = int(draws.integers(1, config.noop_max + 1))
        frames = k if config.noop_start == "frames" else k * env.frame_skip
        env.ale.reset_game()
        screens = []
        for _ in range(frames):
            env.ale.act(env.actions[0])
            screens.append(env.ale.getScreenGrayscale().copy())
        return first, screens

    def resized(screen):
        return cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA)

    first, screens = first_frame_and_screens(NATURE)  # DQN 3.0's frames: pooled
    assert len(screens) >= 2 and not np.array_equal(
        resized(screens[-1]), resized(np.maximum(*screens[-2:]))
    )
    np.testing.assert_array_equal(first, resized(np.maximum(*screens[-2:])))
    first, screens = first_frame_and_screens(NATURE.with_values(noop_start="steps"))
    np.testing.assert_array_equal(first, resized(screens[-1]))  # as before: the last alone


def test_a_training_step_ends_at_the_frame_that_loses_a_life_as_dqn3_does():
    def life_losing_steps(config, lives_lost=4):
        """For each lost life: the frames its step ran, and the frames a frame-by-frame
        replay of the same action from the same emulator state takes to lose it."""
        env = Atari("Breakout", config, seed=0)
        env.new_episode()
        found = []
        for _ in range(lives_lost):
            while True:
                state, lives, before = (
                    env.ale.cloneState(),
                    env.ale.lives(),
                    env.ale.getFrameNumber(),
                )
                if env.step(1)[1]:
                    break
            ran = env.ale.getFrameNumber() - before
            after = env.ale.cloneState()
            env.ale.restoreState(state)
            frames = 0
            while env.ale.lives() == lives:
                env.ale.act(env.actions[1])
                frames += 1
            env.ale.restoreState(after)
            found.append((ran, frames))
            env.new_episode()
        return found

    cut = life_losing_steps(NATURE)
    assert all(ran == frames for ran, frames in cut) and any(ran < 4 for ran, _ in cut)
    whole = life_losing_steps(NATURE.with_values(life_loss_cuts_frame_skip=False))
    assert all(ran == 4 for ran, _ in whole)


def test_unknown_game_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match="unknown game 'Tetris'; valid games: BeamRider, .*Invaders$"
    ):
        check_game("Tetris", PAPER_GAMES)


def test_resume_state_round_trip_continues_identically():
    env = Atari("Seaquest", NATURE, seed=2)
    env.new_episode()
    for _ in range(50):
        env.step(3)
    state = env.get_state()
    expected = [env.step(a) + (env.stack.copy(),) for a in [1, 5, 7, 0] * 30]
    other = Atari("Seaquest", NATURE, seed=99)
    other.set_state(*state)
    got = [other.step(a) + (other.stack.copy(),) for a in [1, 5, 7, 0] * 30]
    for (r1, t1, s1), (r2, t2, s2) in zip(expected, got):
        assert r1 == r2 and t1 == t2
        np.testing.assert_array_equal(s1, s2)
