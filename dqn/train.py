"""The training loop: held-out states, then Algorithm 1 of the 2013 paper in epochs.

`loop` is Algorithm 1 in the paper's order: act epsilon-greedily, play the step, store
the transition, sample a minibatch and take a gradient step. At each epoch's end
(`Config.ends_epoch`) it writes a snapshot and the resume state; run again after being
killed, it continues from the newest snapshot and, on the CPU, ends with the same
weights as an uninterrupted run.

Where the run's state lives and how it is saved and put back is `dqn.checkpoint`'s;
what the run reports is `dqn.progress`'s, and its live view in TensorBoard `dqn.events`'s.

SIGTERM (how SLURM ends a job at its time limit or on preemption, a grace period before
SIGKILL) and SIGINT stop the loop between two steps: it saves everything since the
newest snapshot to one file and exits with 128 + the signal's number, so a scheduler
retries the job and the retry continues from that very step.
"""

from __future__ import annotations

import logging
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from dqn import checkpoint, h5io, presets, provenance, seeding
from dqn.checkpoint import TrainingState
from dqn.devices import machine
from dqn.errors import Diverged, Stopped
from dqn.events import LiveView
from dqn.explore import choose_action, epsilon, greedy
from dqn.games import Env, make_env
from dqn.learner import Learner
from dqn.networks import q_values
from dqn.play import Player, random_policy
from dqn.presets import Config
from dqn.progress import Meter
from dqn.replay import ReplayMemory, check_fits_in_memory
from dqn.rundir import RunDir
from dqn.trainlog import Counters, TrainLog

LOG = logging.getLogger("dqn")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signals():
    """Catch SIGTERM and SIGINT while training: the loop reads the list and stops itself,
    so no signal ends the process halfway through a file or a step. The first signal puts
    the previous handlers back, so a second one acts as usual (a second Ctrl-C aborts a
    long resume or save; the files are written atomically, so it loses no data)."""
    signals: list[int] = []

    def note(signum, _frame):
        signals.append(signum)
        for s, handler in previous.items():
            signal.signal(s, handler)

    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
    try:
        yield signals
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def collect_heldout_states(game: str, config: Config, seed: int) -> np.ndarray:
    """2013 §5.1: a fixed set of states from a random policy, drawn before training.

    As DQN 3.0 does, play randomly, keep the frames in a replay memory and draw the set
    from it, so the held-out stacks are built exactly like training stacks.
    """
    env = make_env(game, config, seeding.derive(seed, "heldout_env"))
    rng = seeding.generator(seed, "heldout_policy")
    memory = random_play(env, rng, config.heldout_collect_steps)
    return memory.sample(config.heldout_states, rng).states


def random_play(env: Env, rng: np.random.Generator, steps: int) -> ReplayMemory:
    """A replay memory holding `steps` steps of a uniform random policy, stored as the
    training loop stores them."""
    memory = ReplayMemory(steps)
    for step in Player(env).run(random_policy(rng), steps):
        memory.store(step)
    return memory


def train(
    game: str,
    preset: str,
    config: Config,
    seed: int,
    out: Path,
    device: torch.device,
    progress_s: float = 10.0,
    live_view: bool = True,
) -> None:
    """Train, or continue a run of `out`; raise Stopped after saving if signalled.
    `live_view`: write TensorBoard event files into `out` as it goes (`dqn.events`)."""
    check_fits_in_memory(config)  # before anything is made
    with stop_signals() as signals, RunDir(out).writing() as run:
        _train(game, preset, config, seed, run, device, progress_s, live_view, signals)


def _train(
    game: str,
    preset: str,
    config: Config,
    seed: int,
    run: RunDir,
    device: torch.device,
    progress_s: float,
    live_view: bool,
    signals: list[int],
) -> None:
    attrs = provenance.record(game, seed, preset, config.as_dict(), machine(device))
    run.claim(attrs)
    LOG.info(
        f"{run.root}: {game}, "
        f"preset {presets.describe(preset, presets.changes(preset, config.as_dict()))}, "
        f"seed {seed}, {config.train_steps:,} agent steps, on {device}"
    )
    # A diverged run stops here, before anything is trained or written: on the CPU it
    # would diverge again in the same epoch, and a scheduler retries any failure.
    if run.diverged.exists():
        diverged = h5io.read_attrs(run.diverged, "diverged")
        raise Diverged(
            f"{run.diverged}: this run diverged in epoch {diverged['epoch']} (step "
            f"{diverged['step']:,}) and would again; to retry it on purpose, delete or "
            "move that file and run again"
        )
    if not run.heldout.exists():
        LOG.info(
            f"collecting {config.heldout_states} held-out states "
            f"({config.heldout_collect_steps} random steps)"
        )
        # compressed: a game's screens repeat much, and reference runs commit this file
        h5io.write(
            run.heldout,
            "heldout",
            attrs,
            {"states": collect_heldout_states(game, config, seed)},
            compress=True,
        )
    last_epoch = checkpoint.completed_epoch(run, config.train_steps)
    if last_epoch is not None:
        LOG.info(f"{run.root}: complete ({run.snapshot(last_epoch)} is the last snapshot)")
        if not run.completion.exists():  # a run that was complete before the file was lost
            checkpoint.mark_complete(run, attrs, last_epoch)
        return

    def new_state() -> TrainingState:
        env = make_env(game, config, seeding.derive(seed, "train_env"))
        return TrainingState(
            Counters(),
            Player(env, start=False),
            Learner(config, env.n_actions, device, seeding.derive(seed, "network")),
            ReplayMemory(config.replay_capacity_transitions),
            seeding.generator(seed, "agent"),
            TrainLog(),
        )

    state, resumed_from, epoch_in_progress = checkpoint.restore(run, new_state)
    if resumed_from:
        LOG.info(f"resumed from {resumed_from} at step {state.counters.step}")
        kind = "interrupted" if resumed_from == run.interrupt else "snapshot"
        if changed := provenance.code_differences(h5io.read_attrs(resumed_from, kind), attrs):
            # Allowed (a fix, an upgrade), but the run is then no longer one program's: a
            # resume is bit-identical only under the same code and libraries.
            LOG.warning(
                f"{resumed_from} was written by other code: {'; '.join(changed)}; the run "
                "continues, and each file from here on records the code that wrote it"
            )
    else:
        state.player.start()
    view = None
    if live_view:
        heldout_states = h5io.read(run.heldout, "heldout")[1]["states"]
        view = LiveView(run.root, state.log, state.counters.step, heldout_states, device)
    meter = Meter(state.counters, state.learner.updates, device)
    if epoch_in_progress:
        meter.continue_epoch(epoch_in_progress)
    try:
        loop(run, attrs, config, state, meter, view, progress_s, signals)
    finally:
        if view:
            view.close()
    checkpoint.mark_complete(run, attrs, state.counters.epoch)


def diverged(run: RunDir, attrs: dict, state: TrainingState, meter: dict, problem: str) -> None:
    """Save epoch `state.counters.epoch`, which ended or was stopped with non-finite
    values (`problem`), to the run's diverged.h5 for inspection, and stop."""
    checkpoint.save_diverged(run, attrs, state, meter)
    raise Diverged(
        f"training diverged in epoch {state.counters.epoch} (step "
        f"{state.counters.step:,}): {problem}; saved what it needs for "
        f"inspection to {run.diverged}, and no snapshot of the epoch"
    )


def terminal_unperceived(state: TrainingState) -> bool:
    """Whether the last agent step ended a training episode: the log's newest episode
    ended at it. Read from the log, which every save keeps, a stop or an epoch's end
    between that step and the one that perceives its terminal resumes to the latter."""
    ends = state.log.episodes["end_step"]
    return bool(ends) and ends[-1] == state.counters.step


def loop(
    run: RunDir,
    attrs: dict,
    config: Config,
    state: TrainingState,
    meter: Meter,
    view: LiveView | None,
    progress_s: float,
    signals: list[int],
) -> None:
    """Algorithm 1 from where `state` stands to `config.train_steps`, saving each epoch;
    `view`, if any, shows the training log as it grows. `signals`: the stop signals
    received so far (`stop_signals`), checked between two steps."""
    counters, player, memory, learner = state.counters, state.player, state.memory, state.learner
    while counters.step < config.train_steps:
        if signals:
            if view:
                view.flush(state.log)
            in_progress = meter.epoch_in_progress()
            loss_mean = in_progress["loss_sum"] / max(1, in_progress["losses"])
            if problem := learner.non_finite(loss_mean):
                # An interrupt file of non-finite weights would be refused by every
                # resume as damaged: the epoch in progress is saved as diverged instead.
                counters.epoch += 1
                diverged(run, attrs, state, in_progress, problem)
            checkpoint.save_interrupted(run, attrs, state, in_progress)
            raise Stopped(
                signals[0],
                f"{signal.Signals(signals[0]).name} at step "
                f"{counters.step:,}: saved {run.interrupt}; run the same "
                "command again to continue from there",
            )
        eps = epsilon(config, counters.step)
        if config.terminal_takes_step and terminal_unperceived(state):
            # DQN 3.0 perceives a training terminal in a step of its own: no action, no
            # transition, but counted like any other (train_agent.lua:82-95).
            counters.step += 1
        else:
            # With probability epsilon a random action, else argmax_a Q(phi_t, a).
            action = choose_action(
                eps,
                player.env.n_actions,
                state.rng,
                lambda: greedy(q_values(learner.network, player.env.stack, learner.device)),
            )
            # Execute it, observe the reward and the next frame; store the transition.
            step = player.step(action)
            memory.store(step)
            counters.step += 1
            if step.episode:
                state.log.add_episode(step.episode, counters.step, counters.epoch + 1)
        # Sample a random minibatch of transitions and take a gradient step on it, every
        # update_period_steps steps once replay start is over. On a GPU the update is
        # only queued here: the emulator plays the next steps while it runs, until an
        # action needs the network.
        updated = (
            counters.step > config.replay_start_steps
            and counters.step % config.update_period_steps == 0
        )
        if updated:
            meter.add_loss(learner.update(memory.sample(config.minibatch_transitions, state.rng)))
        learner.after_step(counters.step)
        if counters.step == config.train_steps or config.ends_epoch(
            counters.step, updated, learner.updates
        ):
            counters.epoch += 1
            meter.end_epoch(state.log, counters, learner.updates, eps)
            if problem := learner.non_finite(state.log.epochs["loss_mean"][-1]):
                diverged(run, attrs, state, meter.epoch_in_progress(), problem)
            if view:
                view.end_epoch(state.log, learner.network)
            checkpoint.save_epoch(run, attrs, state)
        elif view:
            view.write(state.log)
        meter.maybe_report(counters, eps, state.log, config.train_steps, progress_s)
