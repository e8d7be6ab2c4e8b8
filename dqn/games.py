"""The games a run can train on, and the environment that plays each."""

from __future__ import annotations

from dqn.atari import GAMES as ATARI_GAMES
from dqn.atari import Atari
from dqn.catch import Catch
from dqn.errors import ConfigError
from dqn.presets import Config

PAPER_GAMES = tuple(ATARI_GAMES)  # 2013 §5: the seven Atari games of the paper
# A small task with a known optimum, for tests that the agent learns; not in the paper,
# so no default config, figure of the paper's games or Table 1 lists it.
TEST_GAMES = ("Catch",)
GAMES = PAPER_GAMES + TEST_GAMES
Env = Atari | Catch  # what make_env returns: the same interface


def check_game(game: str, valid: tuple[str, ...] = GAMES) -> str:
    """`game`, if it is one of `valid` (a command that needs the emulator: PAPER_GAMES)."""
    if game not in valid:
        raise ConfigError(f"unknown game {game!r}; valid games: {', '.join(valid)}")
    return game


def make_env(game: str, config: Config, seed: int, evaluation: bool = False) -> Env:
    """The environment of `game`: Atari's emulator, or Catch."""
    if check_game(game) == "Catch":
        return Catch(config, seed, evaluation)
    return Atari(game, config, seed, evaluation)
