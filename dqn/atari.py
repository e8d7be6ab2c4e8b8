"""The Atari environment: ALE set-up, frame skip, the 2013 and Nature preprocessing.

We drive `ale_py.ALEInterface` directly rather than through a gymnasium wrapper, so
that the grayscale screen goes straight from the emulator into preallocated buffers
and the frame skip sums rewards the way the 2013 paper describes. The emulator
settings are those of gymnasium's `ALE/<Game>-v5` with sticky actions off
(repeat_action_probability=0: the 2013 emulator was deterministic) and frameskip=1
(we skip frames here); a test checks that the screens agree with gymnasium's.
"""

from __future__ import annotations

import cv2
import numpy as np
from ale_py import ALEInterface, ALEState, LoggerMode, roms

from dqn.frames import FRAME_PIXELS, HISTORY_FRAMES
from dqn.presets import XITARI_ACTIONS, Config

# 2013 §4.1 and §5: the seven games, by the short names used on the command line.
GAMES = {
    "BeamRider": "beam_rider",
    "Breakout": "breakout",
    "Enduro": "enduro",
    "Pong": "pong",
    "Qbert": "qbert",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}

SCREEN_SHAPE = (210, 160)  # ALE's screen, rows x columns
DOWNSAMPLED_SHAPE = (110, 84)  # 2013 §4.1: rows x columns after downsampling
# 2013 §4.1 crops "an 84x84 region that roughly captures the playing area" without
# giving the offset: rows 18..101 of the 110-row image (screen rows 34.4..194.7), as
# deep_q_rl's crop 8 rows above the bottom (ale_experiment.py:11-14). On Breakout that
# drops the score and keeps the field (rewards carry the score anyway). No offset keeps
# every game whole: Q*bert's pyramid, with Q*bert on its top cube, spans screen rows
# 17..205, more than the 160 the crop keeps, and loses both ends.
CROP_TOP_ROW = 18
# resize: each preset shrinks screens as its source did (docs/presets.md, "Resize").
INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}

ALEInterface.setLoggerMode(LoggerMode.Error)


def frame_skip(game: str, config: Config) -> int:
    """Frames per agent step: 2013 §5 uses 3 on Space Invaders, 4 elsewhere."""
    if game == "SpaceInvaders":
        return config.space_invaders_frame_skip_frames
    return config.frame_skip_frames


class Atari:
    """One emulator, seen as the agent sees it: actions in, rewards and 84x84 frames out.

    `stack` is the agent's state phi: the last HISTORY_FRAMES preprocessed frames, oldest
    first, with zeros before the episode's first frame (as the replay memory rebuilds it).
    """

    def __init__(self, game: str, config: Config, seed: int, evaluation: bool = False):
        self.game = game  # `dqn.games.check_game` checked it
        self.config = config
        self.frame_skip = frame_skip(game, config)
        self.life_loss_ends_episode = config.life_loss_ends_episode and not evaluation
        self._cut_at_life_loss = self.life_loss_ends_episode and config.life_loss_cuts_frame_skip
        self.max_episode_frames = (
            config.eval_max_episode_frames if evaluation else config.max_episode_frames
        )
        self.ale = ALEInterface()
        self.ale.setInt("random_seed", seed % 2**31)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(roms.get_rom_path(GAMES[game]))
        # 2013 §4.1 / §5: the minimal action set, 4 to 18 actions per game; Xitari's,
        # which DQN 3.0 played, where it has fewer (the config's action_set).
        self.actions = list(self.ale.getMinimalActionSet())
        if config.action_set == "xitari" and game in XITARI_ACTIONS:
            self.actions = [a for a in self.actions if a.name in XITARI_ACTIONS[game]]
        self.rng = np.random.Generator(np.random.PCG64(seed))  # no-op start lengths
        # Baselines' FireResetEnv, as Stable-Baselines3 wraps every Atari game: FIRE, then
        # the set's third action, at each episode's start (after the no-ops), so a game
        # that waits for FIRE (Breakout's ball) starts without the agent finding FIRE.
        names = self.action_names
        self._start_actions = (
            (names.index("FIRE"), 2) if config.fire_on_reset and "FIRE" in names else ()
        )
        self._max_of_two = config.preprocessing == "nature2015"
        self._interpolation = INTERPOLATIONS[config.resize]
        # [0]: the screen before the last of a frame skip (Nature's max), [1]: the last.
        self._screens = np.zeros((2, *SCREEN_SHAPE), np.uint8)
        self._downsampled = np.zeros(DOWNSAMPLED_SHAPE, np.uint8)
        self.stack = np.zeros((HISTORY_FRAMES, FRAME_PIXELS, FRAME_PIXELS), np.uint8)
        self._game_needs_reset = True

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def action_names(self) -> list[str]:
        """ALE's names of the minimal action set (NOOP, FIRE, UPRIGHT, ...), in order."""
        return [action.name for action in self.actions]

    @property
    def game_over(self) -> bool:
        """Whether the last step ended the game (or hit the frame cap), not just a life."""
        return self._game_needs_reset

    def screen_rgb(self) -> np.ndarray:
        """The emulator's full-colour 210x160 screen."""
        return self.ale.getScreenRGB()

    @property
    def frame(self) -> np.ndarray:
        """The newest preprocessed frame (a view into `stack`)."""
        return self.stack[-1]

    def new_episode(self) -> np.ndarray:
        """Start an episode and return its first state.

        After a game over (or the frame cap) the game is reset; after a lost life that
        ended a training episode (Nature) play continues from where it stopped, as
        DQN 3.0's GameEnvironment does. Nature §Methods: up to 30 no-ops first, frames
        or steps by the config's noop_start; then FIRE if fire_on_reset says so.
        """
        game_reset = self._game_needs_reset
        if game_reset:
            self.ale.reset_game()
            self._game_needs_reset = False
        noop_frames = noop_steps = 0
        if self.config.noop_start == "frames":
            # DQN 3.0 (alewrap GameEnvironment.lua:131-156): nextRandomGame plays k no-op
            # frames, k from 1 to noop_max; after a lost life newGame's null frame comes
            # first (after a game over that call only resets the game, AleEnv.lua:93-97).
            noop_frames = self._draw_noops() + (0 if game_reset else 1)
        elif self.config.noop_start == "steps":
            noop_steps = self._draw_noops()
        elif game_reset:
            # Baselines' NoopResetEnv acts below its frame skip, so it counts frames,
            # and only when the game is reset;
            noop_frames = self._draw_noops()
        else:
            # past a lost life its EpisodicLifeEnv takes one no-op step.
            noop_steps = 1
        for action, frames in (
            [(0, noop_frames)] * (noop_frames > 0)
            + [(0, self.frame_skip)] * noop_steps
            + [(a, self.frame_skip) for a in self._start_actions]
        ):
            self._repeat(action, frames)
            if self.ale.game_over():
                self.ale.reset_game()
        self.stack[:] = 0
        if self.config.noop_start != "frames" or noop_frames < 2:
            # Baselines' reset returns the last frame alone; with DQN 3.0's frames the
            # first frame is the max of the last two no-op frames (GameScreen.lua:93-105),
            # which `_repeat` kept.
            self._screens[0] = 0
        self._grab_frame_into(self.stack[-1])
        return self.stack

    def _draw_noops(self) -> int:
        """How many no-ops start this episode: 1 to noop_max, or none."""
        if self.config.noop_max == 0:
            return 0
        return int(self.rng.integers(1, self.config.noop_max + 1))

    def step(self, action: int) -> tuple[float, bool]:
        """Repeat `action` (an index into the minimal set) for the frame skip.

        Returns the unclipped reward summed over the skipped frames and whether the
        episode ended. The new frame is pushed onto `stack`.
        """
        lives = self.ale.lives() if self.life_loss_ends_episode else 0
        reward = self._repeat(action, self.frame_skip, lives if self._cut_at_life_loss else 0)
        self.stack[:-1] = self.stack[1:]
        self._grab_frame_into(self.stack[-1])
        game_over = self.ale.game_over()
        cut = self.ale.getEpisodeFrameNumber() >= self.max_episode_frames
        life_lost = self.life_loss_ends_episode and self.ale.lives() < lives
        self._game_needs_reset = game_over or cut
        return reward, game_over or cut or life_lost

    def _repeat(self, action: int, frames: int, stop_below_lives: int = 0) -> float:
        """Act for `frames` frames, or until the game ends, or until fewer than
        `stop_below_lives` lives are left (DQN 3.0 ends a training step at the frame
        that loses a life: alewrap GameEnvironment.lua:113-120); keep the screens of
        the last two frames for Nature's max."""
        ale_action = self.actions[action]
        reward = 0.0
        if self._max_of_two:
            self._screens[0] = 0  # stays 0 if the step ends before its last frame
        for i in range(frames):
            reward += self.ale.act(ale_action)
            if self.ale.game_over() or stop_below_lives and self.ale.lives() < stop_below_lives:
                break
            if self._max_of_two and i == frames - 2:
                self.ale.getScreenGrayscale(self._screens[0])
        return reward

    def _grab_frame_into(self, out: np.ndarray) -> None:
        screen = self._screens[1]
        self.ale.getScreenGrayscale(screen)
        if self._max_of_two:
            # Nature §Methods: per-pixel max of the last two frames (sprites that
            # flicker appear in one of them), then resize straight to 84x84.
            np.maximum(screen, self._screens[0], out=screen)
            cv2.resize(
                screen, (FRAME_PIXELS, FRAME_PIXELS), dst=out, interpolation=self._interpolation
            )
        else:
            # 2013 §4.1: downsample to 110x84, then crop the 84x84 playing area.
            cv2.resize(
                screen,
                DOWNSAMPLED_SHAPE[::-1],
                dst=self._downsampled,
                interpolation=self._interpolation,
            )
            out[:] = self._downsampled[CROP_TOP_ROW : CROP_TOP_ROW + FRAME_PIXELS]

    # -- resume --
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-able values): all a resume needs to continue this emulator."""
        return (
            {
                "ale": np.frombuffer(self.ale.cloneState(include_rng=True).serialize(), np.uint8),
                "stack": self.stack.copy(),
            },
            {"game_needs_reset": self._game_needs_reset, "rng": self.rng.bit_generator.state},
        )

    def set_state(self, arrays: dict[str, np.ndarray], values: dict) -> None:
        self.ale.restoreState(ALEState(np.asarray(arrays["ale"], np.uint8).tobytes()))
        self.stack[:] = arrays["stack"]
        self._game_needs_reset = bool(values["game_needs_reset"])
        self.rng.bit_generator.state = values["rng"]
