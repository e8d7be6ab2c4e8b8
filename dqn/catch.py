"""Catch: a small pixel task with a known optimum, for testing that the agent learns.

The rules are bsuite's Catch (Osband et al., "Behaviour Suite for Reinforcement
Learning", ICLR 2020; bsuite/environments/catch.py): a ball starts in a random column of
the top row of a 10x5 grid and falls one row per step; a paddle starts in the middle of
the bottom row and moves left, stays or moves right. When the ball reaches the bottom
row (after 9 steps) the episode ends with +1 if the paddle is under it and -1 if not.
The optimum is +1 every episode; a uniform random policy averages about -0.6.

We write the rules here rather than install bsuite: bsuite 0.3.6 is a source
distribution only, and brings pandas, plotnine, scipy, scikit-image, dm_env and absl
with it, for rules that take a few lines.

The grid is drawn into 84x84 uint8 frames and served through the interface of
`dqn.atari.Atari`, so the unchanged training loop, replay memory (4-frame stacks of
84x84 frames), 2013 network, learner, snapshots and evaluation train and measure it.
"""

from __future__ import annotations

import numpy as np

from dqn.frames import FRAME_PIXELS, HISTORY_FRAMES
from dqn.presets import Config

ROWS, COLUMNS = 10, 5
MOVES = (-1, 0, 1)  # action 0 left, 1 stay, 2 right (bsuite's order)
ACTION_NAMES = ("LEFT", "STAY", "RIGHT")
# The grid cell each pixel row and column of the 84x84 frame shows.
_PIXEL_ROW = np.arange(FRAME_PIXELS) * ROWS // FRAME_PIXELS
_PIXEL_COLUMN = np.arange(FRAME_PIXELS) * COLUMNS // FRAME_PIXELS


class Catch:
    """One Catch game, seen as the agent sees `dqn.atari.Atari`: actions in, rewards and
    84x84 frames out, `stack` the last 4 frames with zeros before the episode's first."""

    frame_skip = 1  # one grid move per agent step
    game_over = True  # every episode is a whole game

    def __init__(self, config: Config, seed: int, evaluation: bool = False):
        del config, evaluation  # the rules have no settings; episodes are 9 steps long
        self.rng = np.random.Generator(np.random.PCG64(seed))  # the ball's columns
        self.n_actions = len(MOVES)
        self.action_names = list(ACTION_NAMES)
        self.ball_row = self.ball_column = self.paddle_column = 0
        self.stack = np.zeros((HISTORY_FRAMES, FRAME_PIXELS, FRAME_PIXELS), np.uint8)

    @property
    def frame(self) -> np.ndarray:
        return self.stack[-1]

    def new_episode(self) -> np.ndarray:
        self.ball_row, self.ball_column = 0, int(self.rng.integers(COLUMNS))
        self.paddle_column = COLUMNS // 2
        self.stack[:] = 0
        self._draw(self.stack[-1])
        return self.stack

    def step(self, action: int) -> tuple[float, bool]:
        self.paddle_column = min(max(self.paddle_column + MOVES[action], 0), COLUMNS - 1)
        self.ball_row += 1
        self.stack[:-1] = self.stack[1:]
        self._draw(self.stack[-1])
        if self.ball_row < ROWS - 1:
            return 0.0, False
        return (1.0 if self.paddle_column == self.ball_column else -1.0), True

    def grid(self) -> np.ndarray:
        """The 10x5 board: 1 where the ball or the paddle is."""
        board = np.zeros((ROWS, COLUMNS), np.uint8)
        board[self.ball_row, self.ball_column] = 1
        board[ROWS - 1, self.paddle_column] = 1
        return board

    def screen_rgb(self) -> np.ndarray:
        """The board in colour, as a screenshot for figures: white on black."""
        return np.repeat(self.frame[:, :, None], 3, axis=2)

    def _draw(self, out: np.ndarray) -> None:
        out[:] = 255 * self.grid()[np.ix_(_PIXEL_ROW, _PIXEL_COLUMN)]

    # -- resume --
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return (
            {"stack": self.stack.copy()},
            {
                "ball": [self.ball_row, self.ball_column],
                "paddle": self.paddle_column,
                "rng": self.rng.bit_generator.state,
            },
        )

    def set_state(self, arrays: dict[str, np.ndarray], values: dict) -> None:
        self.stack[:] = arrays["stack"]
        self.ball_row, self.ball_column = values["ball"]
        self.paddle_column = values["paddle"]
        self.rng.bit_generator.state = values["rng"]


# The first pixel row and column of each grid cell: where a frame is read back.
_CELL_PIXEL_ROW = np.searchsorted(_PIXEL_ROW, np.arange(ROWS))
_CELL_PIXEL_COLUMN = np.searchsorted(_PIXEL_COLUMN, np.arange(COLUMNS))


def optimal_values(states: np.ndarray, discount: float) -> np.ndarray:
    """V*(s) = max_a Q*(s, a) of each state (N x 4 x 84 x 84, as Catch draws them): the
    value the learning test holds a trained network's max-Q to.

    Read from the newest frame: with k steps left before the ball reaches the bottom row,
    the one reward comes at the k-th step, +1 where the paddle can reach the ball's
    column (it moves at most one column a step, so where the columns differ by at most
    k) and -1 where it cannot; discounted, +-discount^(k - 1). A state whose ball is
    already on the bottom row has ended: 0."""
    frames = states[:, -1]
    cells = frames[:, _CELL_PIXEL_ROW][:, :, _CELL_PIXEL_COLUMN] > 0  # N x 10 x 5
    above, bottom = cells[:, : ROWS - 1].sum(axis=(1, 2)), cells[:, ROWS - 1].sum(axis=1)
    # One ball above one paddle; or, once the episode has ended, the ball on the bottom
    # row too, in the paddle's cell (a catch) or another (a miss). And nothing else drawn.
    drawn = 255 * cells[:, _PIXEL_ROW][:, :, _PIXEL_COLUMN].astype(np.uint8)
    valid = np.where(above == 1, bottom == 1, (above == 0) & (bottom >= 1) & (bottom <= 2))
    valid &= (drawn == frames).all(axis=(1, 2))
    if not valid.all():
        raise ValueError(f"state {np.flatnonzero(~valid)[0]} is not a frame Catch draws")
    ball_row = cells[:, : ROWS - 1].any(axis=2).argmax(axis=1)
    ball_column = cells[np.arange(len(cells)), ball_row].argmax(axis=1)
    paddle_column = cells[:, ROWS - 1].argmax(axis=1)
    steps_left = ROWS - 1 - ball_row
    reachable = np.abs(ball_column - paddle_column) <= steps_left
    values = np.where(reachable, 1.0, -1.0) * float(discount) ** (steps_left - 1.0)
    return np.where(above == 1, values, 0.0)
