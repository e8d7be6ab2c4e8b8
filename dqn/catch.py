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
