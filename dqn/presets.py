"""The experiment presets: every constant of a run, in one typed structure.

Units are part of each key's name (`_steps` are agent steps, `_frames` are emulator
frames, `_updates` are minibatch updates, `_transitions` are replay entries). Each key is
declared once, in `Config`: what it means, its unit, its range or choices, and the source
that defines it; each preset's value names its own source. "2013" is Mnih et al.,
Playing Atari with Deep Reinforcement Learning (arXiv 1312.5602); "Nature" is Mnih et al.,
Nature 518:529 (2015), Extended Data Table 1; "DQN 3.0" is DeepMind's released Lua code
(run_gpu, NeuralQLearner.lua), used where the 2013 paper is silent.

pydantic checks the values (types, ranges, choices, finiteness) and reads `--set` text;
the same declaration gives the workflow its schema of preset overrides
(workflow/rules/common.smk).
"""

from __future__ import annotations

import json
from typing import Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from dqn.errors import ConfigError, DataFileError

# The units of the keys; a key's name ends in its unit's word (steps, frames, ...).
STEPS = "agent steps"
FRAMES = "emulator frames"
UPDATES = "minibatch updates"
TRANSITIONS = "replay transitions"
STATES = "held-out states"
EPISODES = "episodes"
DIMENSIONLESS = "dimensionless"
NOOPS = "no-ops: emulator frames or agent steps, by noop_start"


def _key(meaning: str, unit: str, source: str, **bounds):
    """A preset key's declaration: what it means, its unit, the source that defines it,
    and its range as pydantic's bounds (gt, ge, le)."""
    return Field(description=meaning, json_schema_extra={"unit": unit, "source": source}, **bounds)


# The games whose minimal action set in Xitari differs from ale-py's, with Xitari's set
# by ALE's action names (Xitari games/supported/<Game>.cpp, isMinimal: the paper's other
# six games have the same set in both, in the same order).
XITARI_ACTIONS = {"Pong": ("NOOP", "RIGHT", "LEFT")}


class Config(BaseModel):
    """One run's constants. Built only valid: every key present, of its type (no bool
    for an int, no float for an int, no nan or inf), in its range, and the keys
    consistent with one another; otherwise ConfigError naming the key and the value."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    # -- environment (§4.1 of 2013) --
    preprocessing: Literal["paper2013", "nature2015"] = _key(
        "paper2013: gray, 110x84, crop 84x84; nature2015: max of 2 frames, 84x84",
        DIMENSIONLESS,
        "2013 §4.1; Nature Methods",
    )
    resize: Literal["bilinear", "area"] = _key(
        "how a screen is shrunk: bilinear interpolation (OpenCV's INTER_LINEAR), or each "
        "pixel the average of the screen pixels it covers, those at its edges weighted by "
        "the part covered (OpenCV's INTER_AREA)",
        DIMENSIONLESS,
        "bilinear: deep_q_rl ale_experiment.py:165-182; area: DQN 3.0 Scale.lua:25, whose "
        "image.scale 'bilinear' averages so when it shrinks (torch/image generic/image.c, "
        "scaleLinear_rowcol)",
    )
    frame_skip_frames: int = _key(
        "the agent acts every k-th frame, the action repeats between", FRAMES, "2013 §5", gt=0
    )
    space_invaders_frame_skip_frames: int = _key(
        "the frame skip of Space Invaders, whose lasers blink (unseen at k=4)",
        FRAMES,
        "2013 §5",
        gt=0,
    )
    noop_max: int = _key(
        "an episode starts with up to this many no-ops (0: none), counted in noop_start's "
        "unit: emulator frames (frames, frames_at_reset) or agent steps (steps)",
        NOOPS,
        "Nature Extended Data Table 1 (no-op max); DQN 3.0 run_gpu (random_starts=30)",
        ge=0,
    )
    noop_start: Literal["frames", "steps", "frames_at_reset"] = _key(
        "frames: DQN 3.0's, k no-op frames (k drawn from 1 to noop_max) at every training "
        "episode's start, one more after a lost life than after a reset, and at every "
        "evaluation game's; steps: k no-op agent steps at every episode's start (the Nature "
        "text read literally); frames_at_reset: k no-op frames only after the game is reset, "
        "and one no-op step after a lost life (Baselines)",
        DIMENSIONLESS,
        "frames: DQN 3.0 alewrap GameEnvironment.lua:131-156 (newGame, nextRandomGame), "
        "train_agent.lua:90-91 and :141; frames_at_reset: Baselines' NoopResetEnv (below "
        "its frame skip) and EpisodicLifeEnv, in Stable-Baselines3's AtariWrapper",
    )
    life_loss_ends_episode: bool = _key(
        "a lost life is a terminal transition (training only)",
        DIMENSIONLESS,
        "Nature Methods; DQN 3.0 alewrap GameEnvironment.lua:113-117",
    )
    life_loss_cuts_frame_skip: bool = _key(
        "with life_loss_ends_episode, the step that loses a life ends at that frame "
        "instead of repeating its action for the whole frame skip",
        DIMENSIONLESS,
        "DQN 3.0 alewrap GameEnvironment.lua:113-120 (terminal, then break)",
    )
    fire_on_reset: bool = _key(
        "each episode starts with FIRE, then the third action of the minimal set, on games "
        "that have FIRE (a game that waits for FIRE then starts at once)",
        DIMENSIONLESS,
        "OpenAI Baselines' FireResetEnv, in Stable-Baselines3's AtariWrapper",
    )
    action_set: Literal["ale_py", "xitari"] = _key(
        "each game's minimal action set: ale-py's, or that of Xitari, the ALE fork DQN 3.0 "
        "ran on; of the paper's games they differ on Pong alone, where Xitari's lacks "
        "FIRE, RIGHTFIRE and LEFTFIRE (XITARI_ACTIONS)",
        DIMENSIONLESS,
        "ale_py: 2013 §4.1 (4 to 18 actions: the ALE of 2013 gave Pong six, ALE commit "
        "597e12ec); xitari: Xitari games/supported/Pong.cpp:87-97 (isMinimal), which DQN "
        "3.0 plays through alewrap (alewrap.cc:93-102)",
    )
    max_episode_frames: int = _key(
        "a training episode is cut after this many frames",
        FRAMES,
        "ALE v5 (Machado et al. 2018)",
        gt=0,
    )
    # -- network and learner (Algorithm 1 of 2013) --
    network: Literal["paper2013", "nature2015", "dqn3"] = _key(
        "paper2013: 16-32-256; nature2015: 32-64-64-512; dqn3: nature2015 with the first "
        "layer's input padded by one pixel",
        DIMENSIONLESS,
        "2013 §4.1; Nature Methods; DQN 3.0 convnet.lua:17-19 (convnet_atari3)",
    )
    network_init: Literal["fan_in_uniform", "normal_0.01", "he_normal"] = _key(
        "the initial weights: fan_in_uniform, weights and biases uniform in "
        "+-1/sqrt(fan_in); normal_0.01, weights normal with sd 0.01 and biases 0.1; "
        "he_normal, weights normal with sd sqrt(2/fan_in) and biases 0",
        DIMENSIONLESS,
        "fan_in_uniform: Torch7's default, DQN 3.0; normal_0.01: deep_q_rl "
        "q_network.py:420-458; he_normal: nnabla-rl models/atari/q_functions.py",
    )
    minibatch_transitions: int = _key(
        "transitions per minibatch update", TRANSITIONS, "2013 §5", gt=0
    )
    discount: float = _key(
        "gamma, the discount of future rewards per step", DIMENSIONLESS, "2013 §2", ge=0, le=1
    )
    optimizer: Literal["rmsprop", "adam"] = _key(
        "rmsprop: the rmsprop_* keys' form; adam: Adam, as the PyTorch libraries use it",
        DIMENSIONLESS,
        "2013 §5 (RMSProp); Kingma and Ba 2015 (Adam)",
    )
    learning_rate: float = _key(
        "the optimiser's step size", DIMENSIONLESS, "2013 §5 (RMSProp)", gt=0
    )
    rmsprop_centered: bool = _key(
        "True: DQN 3.0's sqrt(g2 - g^2 + eps); False: sqrt(g2 + eps)",
        DIMENSIONLESS,
        "DQN 3.0 NeuralQLearner",
    )
    rmsprop_decay: float = _key(
        "the decay of RMSProp's moving averages (g2, and g when centered)",
        DIMENSIONLESS,
        "Nature Extended Data Table 1 (gradient momentum)",
        ge=0,
        le=1,
    )
    rmsprop_epsilon: float = _key(
        "added inside RMSProp's square root, as DQN 3.0 and deep_q_rl do",
        DIMENSIONLESS,
        "Nature Extended Data Table 1 (min squared gradient)",
        gt=0,
    )
    adam_epsilon: float = _key(
        "added to Adam's root mean square (its decays are fixed at 0.9 and 0.999)",
        DIMENSIONLESS,
        "Kingma and Ba 2015 (the default 1e-8, kept by SB3 and CleanRL)",
        gt=0,
    )
    max_grad_norm: float = _key(
        "the gradient's global L2 norm is clipped to this before each step (0: no clipping)",
        DIMENSIONLESS,
        "Stable-Baselines3's DQN (max_grad_norm=10)",
        ge=0,
    )
    reward_clip: bool = _key(
        "rewards to -1, 0, +1 in training (scores stay unclipped)", DIMENSIONLESS, "2013 §5"
    )
    loss: Literal["squared", "huber"] = _key(
        "squared: (y - Q)^2 / 2; huber: the TD error clipped to [-1, 1] in the gradient",
        DIMENSIONLESS,
        "2013 Algorithm 1; Nature Methods",
    )
    loss_reduction: Literal["sum", "mean"] = _key(
        "how the minibatch's losses combine: sum (DQN 3.0) or mean (deep_q_rl)",
        DIMENSIONLESS,
        "DQN 3.0; deep_q_rl",
    )
    target_update_period_steps: int = _key(
        "the target network is refreshed every this many agent steps, after the step whose "
        "count is one past a multiple of it (0: no target network, as 2013)",
        STEPS,
        "DQN 3.0 NeuralQLearner.lua:356 (numSteps % target_q == 1, numSteps counting agent "
        "steps) and run_gpu (target_q=10000)",
        ge=0,
    )
    update_period_steps: int = _key(
        "one minibatch update every this many agent steps",
        STEPS,
        "2013 Algorithm 1; Nature Extended Data Table 1 (update frequency)",
        gt=0,
    )
    terminal_takes_step: bool = _key(
        "a training episode's end takes one more counted agent step, which plays no action: "
        "replay start, the update and target periods, epsilon and train_steps count it",
        DIMENSIONLESS,
        "DQN 3.0 train_agent.lua:82-95 (the terminal state perceived in a loop step of its "
        "own) and NeuralQLearner.lua:333-350 (no action chosen; an update where due; "
        "numSteps counted); deep_q_rl ale_experiment.py:141-153 (none)",
    )
    # -- replay memory and exploration --
    replay_capacity_transitions: int = _key(
        "the replay memory keeps this many most recent transitions", TRANSITIONS, "2013 §5", gt=0
    )
    replay_start_steps: int = _key(
        "steps of a uniform random policy, without updates, before learning",
        STEPS,
        "DQN 3.0 (learn_start); Nature Extended Data Table 1 (replay start size)",
        ge=0,
    )
    epsilon_start: float = _key(
        "exploration's epsilon when learning starts", DIMENSIONLESS, "2013 §5", ge=0, le=1
    )
    epsilon_end: float = _key(
        "exploration's epsilon after the anneal", DIMENSIONLESS, "2013 §5", ge=0, le=1
    )
    epsilon_anneal_steps: int = _key(
        "length of the linear anneal, counted from epsilon_anneal_from", STEPS, "2013 §5", ge=0
    )
    epsilon_anneal_from: Literal["replay_start", "step_0"] = _key(
        "where the anneal's count starts: the end of replay start (DQN 3.0) or step 0 "
        "(Stable-Baselines3's exploration_fraction); epsilon is 1 during replay start either way",
        DIMENSIONLESS,
        "DQN 3.0 NeuralQLearner (ep_endt after learn_start); Stable-Baselines3 DQN",
    )
    # -- run length and measurement (§5.1 of 2013) --
    train_steps: int = _key("length of training", STEPS, "2013 §5", gt=0)
    epoch_updates: int = _key(
        "updates per epoch (see epoch_counted_in): one snapshot and one evaluation point each",
        UPDATES,
        "2013 §5.1",
        gt=0,
    )
    epoch_counted_in: Literal["updates", "steps"] = _key(
        "updates: an epoch ends at every epoch_updates-th update; steps: at every multiple "
        "of epoch_steps (epoch_updates x update_period_steps agent steps) past "
        "replay_start_steps, counted from the first step, so that the first epoch holds "
        "fewer updates unless replay_start_steps is a multiple of epoch_steps",
        DIMENSIONLESS,
        "updates: 2013 §5.1; steps: DQN 3.0 train_agent.lua:110 (an evaluation where "
        "step % eval_freq == 0 and step > learn_start)",
    )
    heldout_collect_steps: int = _key(
        "random-policy steps played to draw the held-out states",
        STEPS,
        "DQN 3.0 (the first 50000 steps)",
        gt=0,
    )
    heldout_states: int = _key(
        "held-out states of the average max-Q", STATES, "2013 §5.1; DQN 3.0 (valid_size)", gt=0
    )
    eval_epsilon: float = _key(
        "epsilon of the evaluation policy", DIMENSIONLESS, "2013 §5.1", ge=0, le=1
    )
    eval_steps: int = _key("length of an evaluation", STEPS, "2013 §5.1", gt=0)
    eval_episodes: int = _key(
        "an evaluation stops after this many episodes too (0: no limit)",
        EPISODES,
        "Nature Methods (30 episodes)",
        ge=0,
    )
    eval_max_episode_frames: int = _key(
        "an evaluation episode is cut after this many frames",
        FRAMES,
        "Nature Methods (5 minutes)",
        gt=0,
    )
    # -- how a GPU computes the update (no effect on the CPU) --
    cuda_graph_update: bool = _key(
        "on a CUDA device, the update is captured once as a CUDA graph and replayed (one "
        "launch instead of dozens of kernels; the same kernels, so the same numbers); "
        "needs optimizer rmsprop",
        DIMENSIONLESS,
        "this project's; scripts/device-check compares its weights and speed with the plain update",
    )
    cuda_deterministic: bool = _key(
        "on a CUDA device, deterministic algorithms only (torch.use_deterministic_algorithms, "
        "CUBLAS_WORKSPACE_CONFIG), so that a rerun and a resumed run give the same weights "
        "bit for bit, as the CPU always does",
        DIMENSIONLESS,
        "this project's; scripts/device-check measures the resume and the cost in speed",
    )

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(_explain(error)) from None

    @model_validator(mode="after")
    def _check_together(self) -> Config:
        """The rules that join keys (pydantic reports a ValueError raised here as value_error)."""
        if self.replay_start_steps < self.minibatch_transitions:
            raise ValueError(
                f"replay_start_steps={self.replay_start_steps}: must be >= "
                f"minibatch_transitions={self.minibatch_transitions} so a minibatch can be drawn"
            )
        if self.replay_capacity_transitions < self.minibatch_transitions + 4:
            raise ValueError(
                f"replay_capacity_transitions={self.replay_capacity_transitions}: too small "
                f"for minibatch_transitions={self.minibatch_transitions}"
            )
        if self.train_steps <= self.replay_start_steps:
            raise ValueError(
                f"train_steps={self.train_steps}: must exceed "
                f"replay_start_steps={self.replay_start_steps} or no update ever happens"
            )
        if self.noop_max * self.frame_skip_frames >= self.max_episode_frames:
            raise ValueError(
                f"noop_max={self.noop_max}: its no-op frames must "
                f"leave room in an episode of max_episode_frames={self.max_episode_frames}"
            )
        if self.cuda_graph_update and self.optimizer != "rmsprop":
            raise ValueError(
                f"cuda_graph_update=True: needs optimizer=rmsprop, not {self.optimizer!r} "
                "(Adam's bias correction changes with the step count, which a captured "
                "graph would hold fixed)"
            )
        if self.heldout_collect_steps < self.heldout_states + 4:
            raise ValueError(
                f"heldout_collect_steps={self.heldout_collect_steps}: must exceed "
                f"heldout_states={self.heldout_states} to draw that many states"
            )
        return self

    def with_values(self, **changes) -> Config:
        """This config with some keys changed, checked again (presets derive this way)."""
        return Config(**{**self.as_dict(), **changes})

    def with_overrides(self, assignments: list[str]) -> Config:
        """Apply `key=value` strings (the command line's --set), checking key and type."""
        changes = {}
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            if not sep:
                raise ConfigError(f"--set {assignment!r}: expected key=value")
            changes[key.strip()] = parse(key.strip(), text.strip())
        return self.with_values(**changes)

    @property
    def epoch_steps(self) -> int:
        """Agent steps of an epoch after the first, which ends this many steps past the
        replay start at most (`epoch_counted_in`)."""
        return self.epoch_updates * self.update_period_steps

    def ends_epoch(self, step: int, updated: bool, updates: int) -> bool:
        """Whether agent step `step`, which made an update if `updated` (`updates` so far),
        ends an epoch (`epoch_counted_in`); the loop ends one at its last step too."""
        if self.epoch_counted_in == "steps":
            return step > self.replay_start_steps and step % self.epoch_steps == 0
        return updated and updates % self.epoch_updates == 0

    @property
    def first_epoch_end_step(self) -> int:
        """The agent step that ends the first epoch (`ends_epoch`), the only one that holds
        the replay start, unless `train_steps` ends the run before: the first multiple of
        `epoch_steps` past the replay start, or the step of the `epoch_updates`-th update
        (updates fall on the multiples of `update_period_steps` past the replay start)."""
        if self.epoch_counted_in == "steps":
            return (self.replay_start_steps // self.epoch_steps + 1) * self.epoch_steps
        period = self.update_period_steps
        return (self.replay_start_steps // period + self.epoch_updates) * period

    @property
    def epoch_text(self) -> str:
        """An epoch as a figure's axis says it: "50,000 updates each", or where each ends."""
        if self.epoch_counted_in == "steps":
            return f"each ends at a multiple of {self.epoch_steps:,} agent steps"
        return f"{self.epoch_updates:,} updates each"

    def as_dict(self) -> dict:
        return self.model_dump()


# `--set` text read as its key's type (pydantic's lax mode: "2_000" is an int, "no" a bool);
# the range is checked once the whole config is built.
_READERS = {
    key: TypeAdapter(field.annotation, config=ConfigDict(allow_inf_nan=False))
    for key, field in Config.model_fields.items()
}


def parse(key: str, text: str):
    """The value `text` gives preset key `key`, as `--set key=text` reads it."""
    if key not in _READERS:
        raise ConfigError(f"--set {_unknown(key)}")
    try:
        return _READERS[key].validate_strings(text)
    except ValidationError as error:
        raise ConfigError(
            f"--set {key}={text!r}: {_problem(key, error.errors()[0]['type'])}"
        ) from None


def _unknown(key: str) -> str:
    return f"{key}: unknown key; valid keys: {', '.join(sorted(Config.model_fields))}"


def _explain(error: ValidationError) -> str:
    """pydantic's first error in building a Config, as one line naming the key and value."""
    first = error.errors()[0]
    if first["type"] == "value_error":  # a rule of Config._check_together
        return str(first["ctx"]["error"])
    key = first["loc"][0]
    if first["type"] == "extra_forbidden":
        return _unknown(key)
    if first["type"] == "missing":
        return f"{key}: missing"
    return f"{key}={first['input']!r}: {_problem(key, first['type'])}"


def _problem(key: str, error_type: str) -> str:
    """What is wrong with a value of `key`, from the type of pydantic's error."""
    if error_type == "finite_number":
        return "must be a finite number"
    if error_type in ("greater_than", "greater_than_equal", "less_than_equal"):
        bounds = {
            name: getattr(limit, name)
            for limit in Config.model_fields[key].metadata
            for name in ("gt", "ge", "le")
            if hasattr(limit, name)
        }
        if "le" in bounds:
            return f"must be in [{bounds['ge']}, {bounds['le']}]"
        return f"must be > {bounds['gt']}" if "gt" in bounds else f"must be >= {bounds['ge']}"
    annotation = Config.model_fields[key].annotation
    if get_origin(annotation) is Literal:
        return f"expected one of {', '.join(get_args(annotation))}"
    return f"expected {annotation.__name__}"


PAPER2013 = Config(
    preprocessing="paper2013",  # 2013 §4.1
    resize="bilinear",  # 2013 is silent; deep_q_rl ale_experiment.py:165-182
    frame_skip_frames=4,  # 2013 §5
    space_invaders_frame_skip_frames=3,  # 2013 §5
    noop_max=0,  # 2013: no random starts described
    noop_start="steps",  # no no-ops in 2013, so no unit either
    life_loss_ends_episode=False,  # 2013: an episode is a whole game
    life_loss_cuts_frame_skip=False,  # no life-loss episodes in 2013
    fire_on_reset=False,  # 2013 and DQN 3.0: the agent presses FIRE itself
    action_set="ale_py",  # 2013 §4.1: 4 to 18 actions a game (Pong's six, in ALE of 2013)
    max_episode_frames=108_000,  # 30 min of play; ALE v5 default (Machado et al. 2018)
    network="paper2013",  # 2013 §4.1
    network_init="normal_0.01",  # 2013 is silent; deep_q_rl q_network.py:420-458
    minibatch_transitions=32,  # 2013 §5
    # The learner's constants, where 2013 is silent, are those of deep_q_rl's
    # run_nips.py (Sprague's public reproduction of the 2013 method, which learned), not
    # DQN 3.0's: those were tuned with its target network and error clipping, and
    # without a target network its values run away at the paper's replay settings,
    # with or without the clipping (docs/learning.md, "The 2013 preset's constants", has the
    # held-out average max-Q of each choice).
    discount=0.95,  # deep_q_rl run_nips.py (DISCOUNT); with 0.99 its values run away too
    optimizer="rmsprop",  # 2013 §5
    learning_rate=0.0002,  # deep_q_rl run_nips.py (LEARNING_RATE)
    rmsprop_centered=False,  # deep_q_rl run_nips.py (UPDATE_RULE 'rmsprop')
    rmsprop_decay=0.99,  # deep_q_rl run_nips.py (RMS_DECAY)
    rmsprop_epsilon=1e-6,  # deep_q_rl run_nips.py (RMS_EPSILON), inside the square root
    adam_epsilon=1e-8,  # unused with RMSProp; Kingma and Ba's default if --set optimizer=adam
    max_grad_norm=0.0,  # 2013 and DQN 3.0 clip no gradient norm
    reward_clip=True,  # 2013 §5
    loss="squared",  # 2013 Algorithm 1: (y - Q)^2, halved as deep_q_rl (q_network.py)
    loss_reduction="mean",  # deep_q_rl run_nips.py (BATCH_ACCUMULATOR 'mean')
    target_update_period_steps=0,  # 2013 describes no target network
    update_period_steps=1,  # 2013 Algorithm 1: one minibatch update per step
    terminal_takes_step=False,  # 2013 is silent; deep_q_rl ale_experiment.py:141-153
    replay_capacity_transitions=1_000_000,  # 2013 §5: the one million most recent frames
    replay_start_steps=100,  # 2013 is silent; deep_q_rl run_nips.py (REPLAY_START_SIZE=100)
    epsilon_start=1.0,  # 2013 §5
    epsilon_end=0.1,  # 2013 §5
    epsilon_anneal_steps=1_000_000,  # 2013 §5 (1M)
    epsilon_anneal_from="step_0",  # 2013 §5: "over the first million frames"
    train_steps=10_000_000,  # 2013 §5: "10 million frames" = agent steps, as in DQN 3.0
    epoch_updates=50_000,  # 2013 §5.1: an epoch is 50000 minibatch updates
    epoch_counted_in="updates",  # 2013 §5.1, its Figure 2's x axis
    heldout_collect_steps=50_000,  # DQN 3.0 draws its set from the first 50000 steps
    heldout_states=500,  # DQN 3.0 (valid_size=500)
    eval_epsilon=0.05,  # 2013 §5.1
    eval_steps=10_000,  # 2013 §5.1: "epsilon = 0.05 policy for 10000 steps"
    eval_episodes=0,  # 2013: length fixed in steps only
    eval_max_episode_frames=108_000,  # as in training
    cuda_graph_update=False,  # the plain update until a GPU has measured the graph's
    cuda_deterministic=False,  # torch's default; the device check measures the cost
)

NATURE2015 = PAPER2013.with_values(
    preprocessing="nature2015",  # Nature Methods: max of 2 frames, 84x84
    # DQN 3.0's image.scale(x, 84, 84, 'bilinear') (Scale.lua:25) averages the pixels
    # each output pixel covers when it shrinks (torch/image generic/image.c,
    # scaleLinear_rowcol): OpenCV's INTER_AREA, not its INTER_LINEAR.
    resize="area",
    space_invaders_frame_skip_frames=4,  # Nature: k=4 for every game
    noop_max=30,  # Nature Extended Data Table 1 (no-op max); DQN 3.0 run_gpu (random_starts=30)
    # DQN 3.0 plays its no-ops as single frames at every training episode's start, so
    # the agent's steps fall on any frame phase (alewrap GameEnvironment.lua:146-156; the
    # Nature text's "actions" read as agent steps would always start on phase 0).
    noop_start="frames",
    life_loss_ends_episode=True,  # Nature Methods; DQN 3.0 alewrap GameEnvironment.lua:115
    life_loss_cuts_frame_skip=True,  # DQN 3.0 alewrap GameEnvironment.lua:120
    # DQN 3.0 ran on Xitari, whose Pong has three actions (games/supported/Pong.cpp:87-97);
    # the Nature text's "between 4 and 18" valid actions is not what the code played.
    action_set="xitari",
    network="dqn3",  # Nature Methods' 32-64-64-512, padded as DQN 3.0's convnet.lua:17-19
    network_init="fan_in_uniform",  # DQN 3.0: Torch7's default
    replay_start_steps=50_000,  # Nature Extended Data Table 1; DQN 3.0 run_gpu (learn_start)
    epsilon_anneal_from="replay_start",  # DQN 3.0 NeuralQLearner.lua:368-371
    # DQN 3.0's learner, which the Nature method was tuned with (stated here, not
    # inherited, so the 2013 preset's choice below cannot change it):
    discount=0.99,  # Nature Extended Data Table 1
    optimizer="rmsprop",  # Nature Methods
    learning_rate=0.00025,  # Nature Extended Data Table 1
    rmsprop_centered=True,  # DQN 3.0 NeuralQLearner
    rmsprop_decay=0.95,  # Nature Extended Data Table 1 (gradient momentum 0.95)
    rmsprop_epsilon=0.01,  # Nature Extended Data Table 1 (min squared gradient 0.01)
    loss_reduction="sum",  # DQN 3.0: gradients summed over the minibatch
    loss="huber",  # Nature Methods: error term clipped to [-1, 1]
    # Nature Extended Data Table 1 gives 10000 "updates"; DQN 3.0, which the table
    # describes, counts target_q in agent steps (NeuralQLearner.lua:349-356), so the
    # target is refreshed every 2,500 updates at one update per 4 steps.
    target_update_period_steps=10_000,
    update_period_steps=4,  # Nature Extended Data Table 1 (update frequency)
    # DQN 3.0's trainer perceives each training terminal in a step of its own that plays
    # no action (train_agent.lua:82-95), and its schedules count that step.
    terminal_takes_step=True,
    train_steps=50_000_000,  # Nature Methods: 50 million frames = agent steps
    # DQN 3.0 evaluates every eval_freq=250000 agent steps counted from the first
    # (run_gpu:33; train_agent.lua:110): at 250k, 500k, ..., the first after 50,000 updates.
    epoch_updates=62_500,
    epoch_counted_in="steps",
    # DQN 3.0's evaluation (train_agent.lua:110-149): 125000 steps of epsilon 0.05 with
    # no cap on games or their length, the mean over the games completed. The Nature
    # text's 30 games of at most 5 minutes are its final tables' protocol.
    eval_steps=125_000,  # DQN 3.0 run_gpu (eval_steps=125000)
    eval_episodes=0,  # DQN 3.0: every game completed within eval_steps
    eval_max_episode_frames=500_000,  # DQN 3.0 caps no game: eval_steps' frames at most
)

# A useful look at the whole pipeline in a few minutes on 2 CPU cores (two games side
# by side, one core each): the 2013 method at 1/667 of its length. It shows the curves
# and figures being made, not the paper's scores.
QUICK = PAPER2013.with_values(
    replay_capacity_transitions=15_000,
    replay_start_steps=1_000,
    epsilon_anneal_steps=10_000,
    train_steps=15_000,
    epoch_updates=1_400,
    heldout_collect_steps=1_000,
    heldout_states=200,
    eval_steps=1_500,
)

# Every code path of a run (updates, snapshots, evaluation) in seconds on one core, no
# learning: 4 epochs of 100 updates, as short as the tests that stop runs mid-epoch allow,
# on minibatches of 8: the code paths of 32, a run in two thirds of the time (docs/presets.md).
CI = PAPER2013.with_values(
    max_episode_frames=2_000,
    minibatch_transitions=8,
    replay_capacity_transitions=1_000,
    replay_start_steps=200,
    epsilon_anneal_steps=500,
    train_steps=600,
    epoch_updates=100,
    heldout_collect_steps=300,
    heldout_states=32,
    eval_steps=300,
    eval_max_episode_frames=2_000,
)

# The learning test's task (dqn/catch.py, game "Catch"): the 2013 method (no target
# network, squared error, one update per step) shortened to a task whose episodes last 9
# steps and whose optimum is known. The 2013 network and learner as in paper2013.
CATCH = PAPER2013.with_values(
    replay_capacity_transitions=10_000,  # holds the whole run: Catch's states are few
    replay_start_steps=500,  # ~55 episodes of random play before the first update
    epsilon_anneal_steps=2_000,  # ~220 episodes; random play needs no more to see all columns
    train_steps=6_000,  # 5,500 updates
    epoch_updates=500,  # a snapshot and an evaluation point every 500 updates
    heldout_collect_steps=1_000,  # ~110 random episodes
    heldout_states=200,  # a 10x5 grid has few states: 200 cover them many times over
    eval_steps=1_800,  # 200 episodes of the epsilon = 0.05 policy
)

PRESETS = {
    "paper2013": PAPER2013,
    "nature2015": NATURE2015,
    "quick": QUICK,
    "ci": CI,
    "catch": CATCH,
}


def load(name: str, overrides: list[str] = ()) -> Config:
    """The preset called `name` with `key=value` overrides applied and checked."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name].with_overrides(list(overrides))


def from_stored(text: str, where: object) -> Config:
    """The config a file stored as JSON `text`, refused naming `where` (the file) if it
    does not fit this version's keys and ranges."""
    try:
        return Config(**json.loads(text))
    except (TypeError, ValueError, ConfigError) as error:
        raise DataFileError(
            f"{where}: its config does not fit this version of dqn ({error})"
        ) from None


def is_evaluation_key(key: str) -> bool:
    """Whether `key` says how a snapshot is evaluated (eval_*): the keys an evaluation of a
    trained run may change, since they change nothing that was trained."""
    return key.startswith("eval_")


def changes(name: str, config: dict) -> dict:
    """The keys of `config` (a run's, as its files record it) whose values differ from
    the preset `name` as this version defines it (the run's --set overrides, or values
    the preset has changed since), in key order: {} for a preset this version lacks."""
    if name not in PRESETS:
        return {}
    preset = PRESETS[name].as_dict()
    return {key: value for key, value in sorted(config.items()) if preset.get(key, value) != value}


def key_values(keys: dict) -> str:
    """`keys` as `dqn train --set` would take them: `key=value, key=value`."""
    return ", ".join(f"{key}={value}" for key, value in keys.items())


def describe(name: str, changed: dict) -> str:
    """A run's preset as its figures, tables and log name it: the preset's name, with the
    keys the run changed from it (`changes`), e.g. `paper2013 [train_steps=1000000]`."""
    return f"{name} [{key_values(changed)}]" if changed else name
