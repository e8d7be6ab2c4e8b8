"""The experiment presets: every constant of a run, in one typed structure.

Units are part of each key's name (`_steps` are agent steps, `_frames` are emulator
frames, `_updates` are minibatch updates, `_transitions` are replay entries). Each value
names its source: "2013" is Mnih et al., Playing Atari with Deep Reinforcement Learning
(arXiv 1312.5602); "Nature" is Mnih et al., Nature 518:529 (2015), Extended Data
Table 1; "DQN 3.0" is DeepMind's released Lua code (run_gpu, NeuralQLearner.lua),
used where the 2013 paper is silent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from dqn.errors import ConfigError

CHOICES = {
    "preprocessing": ("paper2013", "nature2015"),
    "network": ("paper2013", "nature2015"),
    "loss": ("squared", "huber"),
    "loss_reduction": ("sum", "mean"),
}


@dataclass(frozen=True)
class Config:
    # -- environment (§4.1 of 2013) --
    preprocessing: str  # "paper2013": gray, 110x84, crop 84x84; "nature2015": 2-frame max, 84x84
    frame_skip_frames: int  # the agent acts every k-th frame, the action repeats between
    space_invaders_frame_skip_frames: int  # 2013 §5: k=3 there so the blinking lasers show
    max_noop_start_steps: int  # up to this many no-op steps start an episode (0: none)
    life_loss_ends_episode: bool  # a lost life is a terminal transition (training only)
    max_episode_frames: int  # episode cut after this many frames (training)
    # -- network and learner (Algorithm 1 of 2013) --
    network: str  # "paper2013" (16-32-256) or "nature2015" (32-64-64-512)
    minibatch_transitions: int
    discount: float
    learning_rate: float
    rmsprop_centered: bool  # True: DQN 3.0's sqrt(g2 - g^2 + eps); False: sqrt(g2 + eps)
    rmsprop_decay: float  # the moving averages' decay (g2, and g when centered)
    rmsprop_epsilon: float  # added inside the square root, as DQN 3.0 and deep_q_rl do
    reward_clip: bool  # rewards to -1, 0, +1 in training (scores stay unclipped)
    loss: str  # "squared" or "huber" (= TD error clipped to [-1, 1])
    loss_reduction: str  # "sum" (DQN 3.0) or "mean" (deep_q_rl) over the minibatch
    target_update_period_updates: int  # 0: no target network (2013)
    update_period_steps: int  # one minibatch update every this many agent steps
    # -- replay memory and exploration --
    replay_capacity_transitions: int
    replay_start_steps: int  # uniform random policy, no updates, before learning
    epsilon_start: float
    epsilon_end: float
    epsilon_anneal_steps: int  # linear anneal, counted from the end of replay start
    # -- run length and measurement (§5.1 of 2013) --
    train_steps: int
    epoch_updates: int  # one snapshot and one evaluation point per epoch
    heldout_collect_steps: int  # random-policy steps played to draw the held-out states
    heldout_states: int  # number of held-out states for the average max-Q
    eval_epsilon: float
    eval_steps: int  # evaluation length in agent steps
    eval_episodes: int  # stop evaluation after this many episodes too (0: no limit)
    eval_max_episode_frames: int  # evaluation episode cut after this many frames

    def with_overrides(self, assignments: list[str]) -> "Config":
        """Apply `key=value` strings (the command line's --set), checking key and type."""
        changes = {}
        types = {f.name: f.type for f in fields(self)}
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            key = key.strip()
            if not sep:
                raise ConfigError(f"--set {assignment!r}: expected key=value")
            if key not in types:
                raise ConfigError(
                    f"--set {key}: unknown key; valid keys: {', '.join(sorted(types))}"
                )
            changes[key] = _parse(key, types[key], text.strip())
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> "Config":
        """Check every value's type and range; raise ConfigError naming the first bad key."""
        for f in fields(self):
            value = getattr(self, f.name)
            expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[f.type]
            if isinstance(value, bool) and f.type != "bool" or not isinstance(value, expected):
                raise ConfigError(f"{f.name}={value!r}: expected {f.type}")
            if f.name in CHOICES and value not in CHOICES[f.name]:
                raise ConfigError(
                    f"{f.name}={value!r}: expected one of {', '.join(CHOICES[f.name])}"
                )
        positive = [
            "frame_skip_frames", "space_invaders_frame_skip_frames", "max_episode_frames",
            "minibatch_transitions", "learning_rate", "update_period_steps",
            "replay_capacity_transitions", "train_steps", "epoch_updates",
            "heldout_collect_steps", "heldout_states", "eval_steps",
            "eval_max_episode_frames",
        ]
        non_negative = [
            "max_noop_start_steps", "target_update_period_updates", "replay_start_steps",
            "epsilon_anneal_steps", "eval_episodes", "rmsprop_epsilon",
        ]
        unit_interval = ["discount", "rmsprop_decay", "epsilon_start", "epsilon_end", "eval_epsilon"]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}={getattr(self, key)!r}: must be > 0")
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)!r}: must be >= 0")
        for key in unit_interval:
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}={getattr(self, key)!r}: must be in [0, 1]")
        if self.replay_start_steps < self.minibatch_transitions:
            raise ConfigError(
                f"replay_start_steps={self.replay_start_steps}: must be >= "
                f"minibatch_transitions={self.minibatch_transitions} so a minibatch can be drawn"
            )
        if self.replay_capacity_transitions < self.minibatch_transitions + 4:
            raise ConfigError(
                f"replay_capacity_transitions={self.replay_capacity_transitions}: too small "
                f"for minibatch_transitions={self.minibatch_transitions}"
            )
        if self.train_steps <= self.replay_start_steps:
            raise ConfigError(
                f"train_steps={self.train_steps}: must exceed "
                f"replay_start_steps={self.replay_start_steps} or no update ever happens"
            )
        if self.heldout_collect_steps < self.heldout_states + 4:
            raise ConfigError(
                f"heldout_collect_steps={self.heldout_collect_steps}: must exceed "
                f"heldout_states={self.heldout_states} to draw that many states"
            )
        return self

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _parse(key: str, type_name: str, text: str):
    try:
        if type_name == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if type_name == "int":
            return int(text.replace("_", ""))
        if type_name == "float":
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"--set {key}={text!r}: expected {type_name}") from None


PAPER2013 = Config(
    preprocessing="paper2013",  # 2013 §4.1
    frame_skip_frames=4,  # 2013 §5
    space_invaders_frame_skip_frames=3,  # 2013 §5
    max_noop_start_steps=0,  # 2013: no random starts described
    life_loss_ends_episode=False,  # 2013: an episode is a whole game
    max_episode_frames=108_000,  # 30 min of play; ALE v5 default (Machado et al. 2018)
    network="paper2013",  # 2013 §4.1
    minibatch_transitions=32,  # 2013 §5
    # The learner's constants, where 2013 is silent, are those of deep_q_rl's
    # run_nips.py (Sprague's public reproduction of the 2013 method, which learned), not
    # DQN 3.0's: those were tuned with its target network and error clipping, and
    # without a target network its values run away at the paper's replay settings,
    # with or without the clipping (README, "The 2013 preset's constants", has the
    # held-out average max-Q of each choice).
    discount=0.95,  # deep_q_rl run_nips.py (DISCOUNT); with 0.99 its values run away too
    learning_rate=0.0002,  # deep_q_rl run_nips.py (LEARNING_RATE)
    rmsprop_centered=False,  # deep_q_rl run_nips.py (UPDATE_RULE 'rmsprop')
    rmsprop_decay=0.99,  # deep_q_rl run_nips.py (RMS_DECAY)
    rmsprop_epsilon=1e-6,  # deep_q_rl run_nips.py (RMS_EPSILON), inside the square root
    reward_clip=True,  # 2013 §5
    loss="squared",  # 2013 Algorithm 1: (y - Q)^2
    loss_reduction="mean",  # deep_q_rl run_nips.py (BATCH_ACCUMULATOR 'mean')
    target_update_period_updates=0,  # 2013 describes no target network
    update_period_steps=1,  # 2013 Algorithm 1: one minibatch update per step
    replay_capacity_transitions=1_000_000,  # 2013 §5: the one million most recent frames
    replay_start_steps=50_000,  # DQN 3.0 (learn_start=50000); 2013 is silent
    epsilon_start=1.0,  # 2013 §5
    epsilon_end=0.1,  # 2013 §5
    epsilon_anneal_steps=1_000_000,  # 2013 §5 (1M); counted from replay start as DQN 3.0 does
    train_steps=10_000_000,  # 2013 §5: "10 million frames" = agent steps, as in DQN 3.0
    epoch_updates=50_000,  # 2013 §5.1: an epoch is 50000 minibatch updates
    heldout_collect_steps=50_000,  # DQN 3.0 draws its set from the first 50000 steps
    heldout_states=500,  # DQN 3.0 (valid_size=500)
    eval_epsilon=0.05,  # 2013 §5.1
    eval_steps=10_000,  # 2013 §5.1: "epsilon = 0.05 policy for 10000 steps"
    eval_episodes=0,  # 2013: length fixed in steps only
    eval_max_episode_frames=108_000,  # as in training
)

NATURE2015 = dataclasses.replace(
    PAPER2013,
    preprocessing="nature2015",  # Nature Methods: max of 2 frames, 84x84
    space_invaders_frame_skip_frames=4,  # Nature: k=4 for every game
    max_noop_start_steps=30,  # Nature Extended Data Table 1 (no-op max)
    life_loss_ends_episode=True,  # Nature Methods; DQN 3.0 GameEnvironment
    network="nature2015",  # Nature Methods: 32-64-64-512
    # DQN 3.0's learner, which the Nature method was tuned with (stated here, not
    # inherited, so the 2013 preset's choice below cannot change it):
    discount=0.99,  # Nature Extended Data Table 1
    learning_rate=0.00025,  # Nature Extended Data Table 1
    rmsprop_centered=True,  # DQN 3.0 NeuralQLearner
    rmsprop_decay=0.95,  # Nature Extended Data Table 1 (gradient momentum 0.95)
    rmsprop_epsilon=0.01,  # Nature Extended Data Table 1 (min squared gradient 0.01)
    loss_reduction="sum",  # DQN 3.0: gradients summed over the minibatch
    loss="huber",  # Nature Methods: error term clipped to [-1, 1]
    target_update_period_updates=10_000,  # Nature Extended Data Table 1
    update_period_steps=4,  # Nature Extended Data Table 1 (update frequency)
    train_steps=50_000_000,  # Nature Methods: 50 million frames = agent steps
    epoch_updates=62_500,  # 250000 agent steps per epoch, DQN 3.0 (eval_freq=250000)
    eval_steps=125_000,  # DQN 3.0 (eval_steps=125000)
    eval_episodes=30,  # Nature Methods: 30 episodes
    eval_max_episode_frames=18_000,  # Nature Methods: at most 5 minutes
)

# A useful look at the whole pipeline in a few minutes on 2 CPU cores (two games side
# by side, one core each): the 2013 method at 1/667 of its length. It shows the curves
# and figures being made, not the paper's scores.
QUICK = dataclasses.replace(
    PAPER2013,
    replay_capacity_transitions=15_000,
    replay_start_steps=1_000,
    epsilon_anneal_steps=10_000,
    train_steps=15_000,
    epoch_updates=1_400,
    heldout_collect_steps=1_000,
    heldout_states=200,
    eval_steps=1_500,
)

# Tens of seconds: every code path of a run (updates, snapshots, evaluation), no learning.
CI = dataclasses.replace(
    PAPER2013,
    max_episode_frames=2_000,
    replay_capacity_transitions=1_000,
    replay_start_steps=200,
    epsilon_anneal_steps=500,
    train_steps=1_000,
    epoch_updates=200,
    heldout_collect_steps=300,
    heldout_states=32,
    eval_steps=300,
    eval_max_episode_frames=2_000,
)

# The learning test's task (dqn/catch.py, game "Catch"): the 2013 method (no target
# network, squared error, one update per step) shortened to a task whose episodes last 9
# steps and whose optimum is known. The 2013 network and learner as in paper2013.
CATCH = dataclasses.replace(
    PAPER2013,
    replay_capacity_transitions=10_000,  # holds the whole run: Catch's states are few
    replay_start_steps=500,  # ~55 episodes of random play before the first update
    epsilon_anneal_steps=2_000,  # ~220 episodes; random play needs no more to see all columns
    train_steps=6_000,  # 5,500 updates
    epoch_updates=500,  # a snapshot and an evaluation point every 500 updates
    heldout_collect_steps=1_000,  # ~110 random episodes
    heldout_states=200,  # a 10x5 grid has few states: 200 cover them many times over
    eval_steps=1_800,  # 200 episodes of the epsilon = 0.05 policy
)

PRESETS = {"paper2013": PAPER2013, "nature2015": NATURE2015, "quick": QUICK, "ci": CI,
           "catch": CATCH}


def load(name: str, overrides: list[str] = ()) -> Config:
    """The preset called `name` with `key=value` overrides applied and checked."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name].validated().with_overrides(list(overrides))
