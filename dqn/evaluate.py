"""Evaluation of every snapshot of a run (2013 §5.1, Figure 2, Table 1).

For each snapshot: play the epsilon = 0.05 policy for `eval_steps` agent steps and
report the average total reward per episode and the best episode, and the average over
the held-out states of max_a Q(s, a). Reads snapshots and held-out states only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dqn import h5io, networks, provenance, seeding
from dqn.checkpoint import load_snapshot
from dqn.devices import machine
from dqn.errors import ConfigError, DataFileError
from dqn.explore import choose_action, greedy
from dqn.games import Env, make_env
from dqn.layouts import EVALUATION_COLUMNS
from dqn.networks import average_max_q, q_values
from dqn.play import Player, Policy, Step
from dqn.presets import Config, from_stored, is_evaluation_key
from dqn.rundir import RunDir, check_same_run

LOG = logging.getLogger("dqn")


def load_network(
    path: Path, config: Config, n_actions: int, device: torch.device
) -> tuple[torch.nn.Module, dict]:
    """The network of snapshot `path`, ready to play, and the snapshot's attributes."""
    network = networks.build(config.network, n_actions)
    attrs = load_snapshot(path, network)
    return network.to(device).eval(), attrs


@torch.inference_mode()
def play(
    network: torch.nn.Module, game: str, config: Config, seed: int, epoch: int, device: torch.device
) -> tuple[list[float], int]:
    """Total rewards of the episodes the epsilon-greedy policy completes within
    eval_steps, and how many completed.

    If none completes, the unfinished episode's reward stands alone (DQN 3.0 would
    report 0 there, which hides that the game never ended). Each snapshot gets its own
    seeds, so results do not depend on the order (or parallelism) of evaluation.
    """
    env = make_env(game, config, seeding.derive(seed, "eval_env", epoch), evaluation=True)
    rng = seeding.generator(seed, "eval_policy", epoch)
    player = Player(env)
    steps = player.run(
        epsilon_greedy(network, config.eval_epsilon, rng, device),
        config.eval_steps,
        config.eval_episodes,
    )
    returns = [step.episode.total_reward for step in steps if step.episode]
    return (returns or [player.episode_return]), len(returns)


def epsilon_greedy(
    network: torch.nn.Module, eps: float, rng: np.random.Generator, device: torch.device
) -> Policy:
    """2013 §5.1: the epsilon-greedy policy of `network`; it runs only when needed."""
    return lambda env: choose_action(
        eps, env.n_actions, rng, lambda: greedy(q_values(network, env.stack, device))
    )


@dataclass(frozen=True)
class ValuedStep:
    """A state the policy acted in, as a person and the network saw it, and the step
    taken from it."""

    screen: np.ndarray  # the emulator's full-colour 210x160 screen
    q: np.ndarray  # Q(s, a) for every action, float64
    step: Step


def play_with_values(
    network: torch.nn.Module,
    env: Env,
    eps: float,
    rng: np.random.Generator,
    device: torch.device,
    max_steps: int,
    max_episodes: int,
) -> Iterator[ValuedStep]:
    """`epsilon_greedy`'s play from the start of an episode, yielding for each state its
    screen and Q-values (so the network runs every step, not only for greedy actions):
    the data of Figure 3 (2013 §5.2) and of `dqn watch`'s videos."""
    seen = {}

    def policy(env: Env) -> int:
        seen["screen"] = env.screen_rgb()
        seen["q"] = q_values(network, env.stack, device).astype(np.float64)
        return choose_action(eps, env.n_actions, rng, lambda: greedy(seen["q"]))

    for step in Player(env).run(policy, max_steps, max_episodes):
        yield ValuedStep(seen["screen"], seen["q"], step)


@dataclass(frozen=True)
class TrainedRun:
    """A run as its readers see it: the directory, the held-out file's attributes (the
    run's identity), its config, game and seed, and the epochs of its snapshots."""

    dir: RunDir
    held: dict
    config: Config
    game: str
    seed: int
    epochs: list[int]

    @classmethod
    def open(cls, run_dir: Path) -> TrainedRun:
        run = RunDir(run_dir)
        held = h5io.read_attrs(run.heldout, "heldout")
        epochs = run.snapshot_epochs()
        if not epochs:
            raise DataFileError(f"{run.root / 'snapshots'}: no snapshots")
        config = from_stored(held["config"], run.heldout)
        return cls(run, held, config, held["game"], int(held["seed"]), epochs)

    def chosen(self, epochs: list[int] | None) -> list[int]:
        """`epochs` ascending, each once, or every snapshot's where none are chosen;
        refused where the run has no snapshot of one."""
        if missing := sorted(set(epochs or []) - set(self.epochs)):
            first, last = self.epochs[0], self.epochs[-1]
            has = (
                f"{first}-{last}"
                if len(self.epochs) == last - first + 1
                else ", ".join(map(str, self.epochs))
            )
            raise DataFileError(
                f"{self.dir.root / 'snapshots'}: no snapshot of epoch "
                f"{', '.join(map(str, missing))} (it has {has})"
            )
        return sorted(set(epochs)) if epochs else self.epochs

    def heldout_states(self) -> np.ndarray:
        """The held-out states of the average max-Q (2013 §5.1)."""
        return h5io.read(self.dir.heldout, "heldout")[1]["states"]

    def network(
        self, epoch: int, n_actions: int, device: torch.device
    ) -> tuple[torch.nn.Module, dict]:
        """load_network of snapshot `epoch`, refused where another run wrote it (a file
        copied in by hand)."""
        path = self.dir.snapshot(epoch)
        network, attrs = load_network(path, self.config, n_actions, device)
        check_same_run(path, attrs, self.dir.heldout, self.held)
        return network, attrs


def evaluation_config(config: Config, overrides: list[str]) -> Config:
    """The run's config with `key=value` overrides of evaluation keys only (eval_*): how
    a snapshot is evaluated may change, what was trained may not."""
    for assignment in overrides:
        if not is_evaluation_key(assignment.strip()):  # with_overrides strips keys too
            raise ConfigError(
                f"--set {assignment!r}: only the evaluation's keys (eval_*) "
                "may be changed when evaluating a run"
            )
    return config.with_overrides(overrides)


def checked_request(
    run_dir: Path, out: Path, overrides: list[str] = (), only_epochs: list[int] | None = None
) -> tuple[TrainedRun, Config, list[int]]:
    """What `evaluate_run` is asked, refused by name where it cannot be done: the run,
    its config with `overrides`, the snapshots of `only_epochs` (default: all) and the
    output file. `dqn evaluate` asks it before it claims a GPU, which may wait for one."""
    run = TrainedRun.open(run_dir)
    config = evaluation_config(run.config, list(overrides))
    epochs = run.chosen(only_epochs)
    run.dir.check_output(out, "evaluation")
    return run, config, epochs


def evaluate_run(
    run_dir: Path,
    out: Path,
    device: torch.device,
    workers: int = 1,
    overrides: list[str] = (),
    only_epochs: list[int] | None = None,
) -> dict:
    """Evaluate every snapshot of the run (or those of `only_epochs`), with the run's
    config or that config with `overrides` of its evaluation keys. A `dqn train` may be
    writing the run at the same time: it only adds files, each renamed into place whole,
    and never changes or deletes a committed snapshot (one it cannot read back on a
    resume it moves aside, and a read of it fails by name), so the evaluation covers
    the snapshots listed at its start."""
    run, config, epochs = checked_request(run_dir, out, overrides, only_epochs)
    heldout_states = run.heldout_states()
    n_actions = make_env(run.game, config, 0).n_actions

    def evaluate_one(epoch: int) -> dict:
        network, attrs = run.network(epoch, n_actions, device)
        returns, completed = play(network, run.game, config, run.seed, epoch, device)
        return {
            "epoch": epoch,
            "step": attrs["step"],
            "update": attrs["update"],
            "average_reward": float(np.mean(returns)),
            "best_episode_reward": float(np.max(returns)),
            "episodes": completed,
            "average_max_q": average_max_q(network, heldout_states, device),
            "episode_returns": returns[:completed],
            "snapshot_attrs": attrs,
        }

    LOG.info(
        f"{run.dir.root}: evaluating {len(epochs)} snapshots, {config.eval_steps:,} agent steps "
        f"each at epsilon {config.eval_epsilon}, {workers} at a time, on {device}"
    )
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        rows = list(pool.map(evaluate_one, epochs))
    finally:
        # Not waiting for the snapshots in play when stopped (Ctrl-C): `dqn` then ends
        # the process, and with it their threads, rather than play them to the end.
        pool.shutdown(wait=False, cancel_futures=True)
    table = {
        name: np.array([row[name] for row in rows], dtype)
        for name, dtype in EVALUATION_COLUMNS.items()
    }
    table["episode_returns"] = np.array(
        [r for row in rows for r in row["episode_returns"]], np.float64
    )
    attrs = provenance.record(
        run.game, run.seed, run.held["preset"], config.as_dict(), machine(device)
    )
    # resolved: the pieces of one run evaluated from other directories are one run's
    # (`dqn.plots.merged_evaluations` tells runs apart by it)
    attrs["run"] = str(run.dir.root.resolve())
    attrs["trained_by"] = provenance.trained_by(
        {row["epoch"]: row["snapshot_attrs"] for row in rows}
    )
    h5io.write(out, "evaluation", attrs, table)
    return table


# The trace plays its own episode: a fourth seed element keeps its emulator and policy
# streams apart from the evaluation of the same epoch (and `dqn.video`'s).
TRACE_STREAM = 1


def snapshot_play(
    run: TrainedRun, epoch: int, stream: int, device: torch.device, evaluation: bool = True
) -> tuple[Env, np.random.Generator, torch.nn.Module, dict]:
    """What a play of snapshot `epoch` of its own needs, seeded by `stream` (a fourth seed
    element beside the evaluation's): the evaluation environment (or, not `evaluation`,
    the game as training plays it), the policy's generator, the network and the
    snapshot's attributes."""
    env = make_env(
        run.game,
        run.config,
        seeding.derive(run.seed, "eval_env", epoch, stream),
        evaluation=evaluation,
    )
    rng = seeding.generator(run.seed, "eval_policy", epoch, stream)
    network, attrs = run.network(epoch, env.n_actions, device)
    return env, rng, network, attrs


@torch.inference_mode()
def trace_run(run_dir: Path, out: Path, device: torch.device, steps: int) -> dict:
    """2013 §5.2, Figure 3: the final snapshot's predicted value along one episode.

    Plays the epsilon = eval_epsilon policy from the start of an episode for at most
    `steps` agent steps (or until the episode ends) and records, for each state s_t,
    the newest 84x84 frame the network sees, the emulator's RGB screen, max_a Q(s_t, a)
    and the unclipped reward of the step taken from s_t.
    """
    run = TrainedRun.open(run_dir)
    config, epoch = run.config, run.epochs[-1]
    run.dir.check_output(out, "value_trace")
    env, rng, network, attrs = snapshot_play(run, epoch, TRACE_STREAM, device)
    columns = {"frames": [], "screens": [], "q": [], "max_q": [], "actions": [], "rewards": []}
    for seen in play_with_values(
        network, env, config.eval_epsilon, rng, device, steps, max_episodes=1
    ):
        step = seen.step
        columns["screens"].append(seen.screen)
        columns["q"].append(seen.q)
        columns["max_q"].append(seen.q.max())
        columns["frames"].append(step.frame)
        columns["actions"].append(step.action)
        columns["rewards"].append(step.reward)
    table = {name: np.asarray(values) for name, values in columns.items()}
    trace_attrs = provenance.record(
        run.game, run.seed, run.held["preset"], config.as_dict(), machine(device)
    )
    trace_attrs.update(
        {
            "run": str(run.dir.root.resolve()),  # as an evaluation's: where it was
            "snapshot": str(run.dir.snapshot(epoch)),
            "trained_by": provenance.trained_by({epoch: attrs}),
            "epoch": epoch,
            "step": attrs["step"],
            "update": attrs["update"],
            "epsilon": config.eval_epsilon,
            "episode_ended": bool(step.terminal),
            "frame_skip_frames": env.frame_skip,
        }
    )
    h5io.write(out, "value_trace", trace_attrs, table, compress=True)
    return table
