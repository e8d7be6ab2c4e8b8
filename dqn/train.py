"""The training loop: held-out states, then Algorithm 1 of the 2013 paper in epochs.

The loop in `train` is Algorithm 1: act epsilon-greedily, store the transition, sample
a minibatch, take a gradient step; the emulator plays each step while the update runs
(in a thread of its own on the CPU; on a GPU, which computes what is queued, beside the
launched update), with the same results as one after the other (see the loop).
Every `epoch_updates` updates it writes a snapshot and the resume state; run again
after being killed, it continues from the newest snapshot and, on the CPU, ends with
the same weights as an uninterrupted run.

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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dqn import checkpoint, h5io, provenance, seeding
from dqn.checkpoint import TrainingState
from dqn.errors import Diverged, Stopped
from dqn.events import LiveView
from dqn.explore import epsilon, greedy, random_action
from dqn.games import Env, make_env
from dqn.learner import Learner
from dqn.networks import q_values, queue_q_values
from dqn.play import Player, random_policy
from dqn.presets import Config
from dqn.progress import Meter
from dqn.replay import Minibatch, ReplayMemory, check_fits_in_memory
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
    received: list[int] = []

    def note(signum, _frame):
        received.append(signum)
        for s, handler in previous.items():
            signal.signal(s, handler)

    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
    try:
        yield received
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


def train(game: str, preset: str, config: Config, seed: int, out: Path,
          device: torch.device, progress_s: float = 10.0, live_view: bool = True) -> None:
    """Train, or continue a run of `out`; raise Stopped after saving if signalled.
    `live_view`: write TensorBoard event files into `out` as it goes (`dqn.events`)."""
    check_fits_in_memory(config.replay_capacity_transitions)  # before anything is made
    with stop_signals() as received, RunDir(out).writing() as run:
        _train(game, preset, config, seed, run, device, progress_s, live_view, received)


def _train(game: str, preset: str, config: Config, seed: int, run: RunDir,
           device: torch.device, progress_s: float, live_view: bool,
           received: list[int]) -> None:
    attrs = provenance.record(game, seed, preset, config.as_dict())
    run.claim(attrs)
    if not run.heldout.exists():
        LOG.info(f"collecting {config.heldout_states} held-out states "
                 f"({config.heldout_collect_steps} random steps)")
        h5io.write(run.heldout, "heldout", attrs,
                   {"states": collect_heldout_states(game, config, seed)})
    last_epoch = checkpoint.completed_epoch(run, config.train_steps)
    if last_epoch is not None:
        LOG.info(f"{run.root}: complete ({run.snapshot(last_epoch)} is the last snapshot)")
        if not run.completion.exists():  # a run that was complete before the file was lost
            checkpoint.mark_complete(run, attrs, last_epoch)
        return

    def new_state() -> TrainingState:
        env = make_env(game, config, seeding.derive(seed, "train_env"))
        return TrainingState(
            Counters(), Player(env, start=False),
            Learner(config, env.n_actions, device, seeding.derive(seed, "network")),
            ReplayMemory(config.replay_capacity_transitions), seeding.generator(seed, "agent"),
            TrainLog())

    state, resumed_from, epoch_in_progress = checkpoint.restore(run, new_state)
    if resumed_from:
        LOG.info(f"resumed from {resumed_from} at step {state.counters.step}")
    else:
        state.player.start()
    view = None
    if live_view:
        heldout_states = h5io.read(run.heldout, "heldout")[1]["states"]
        view = LiveView(run.root, state.log, state.counters.step, heldout_states, device)
    meter = Meter(state.counters, state.learner.updates, device)
    if epoch_in_progress:
        meter.restore(epoch_in_progress)
    try:
        loop(run, attrs, config, state, meter, view, progress_s, received)
    finally:
        if view:
            view.close()
    checkpoint.mark_complete(run, attrs, state.counters.epoch)


def loop(run: RunDir, attrs: dict, config: Config, state: TrainingState, meter: Meter,
         view: LiveView | None, progress_s: float, received: list[int]) -> None:
    """Algorithm 1 from where `state` stands to `config.train_steps`, saving each epoch;
    `view`, if any, shows the training log as it grows."""
    counters, learner = state.counters, state.learner
    # One thread for the emulator: it plays a step while its update runs (see below).
    # The ALE holds Python's GIL while it emulates, but torch's kernels do not, so the
    # two overlap (README, "Benchmark": the loop's overhead over the bare update).
    with ThreadPoolExecutor(1, thread_name_prefix="dqn-emulator") as emulator:
        draws = None  # the step's draws, when the emulator thread made them ahead
        while counters.step < config.train_steps:
            if received and draws is None:
                if view:
                    view.flush(state.log)
                checkpoint.save_interrupted(run, attrs, state, meter.state())
                raise Stopped(received[0], f"{signal.Signals(received[0]).name} at step "
                              f"{counters.step:,}: saved {run.interrupt}; run the same "
                              "command again to continue from there")
            eps = epsilon(config, counters.step)
            draws = draws or begin_step(config, state)
            updating = draws.minibatch is not None
            ends_epoch = (counters.step + 1 == config.train_steps or updating
                          and (learner.updates + 1) % config.epoch_updates == 0)
            # Algorithm 1: with probability epsilon a random action (drawn already), else
            # argmax_a Q(phi, a).
            action = draws.action
            ahead = updating and not (ends_epoch or received)
            if updating and queues_updates(learner.device):
                # A GPU computes in the order work is queued: the action's forward pass,
                # then the update after step t. The update is launched before the action
                # is read back, and the emulator plays step t while the GPU computes: no
                # thread is needed, and the next step's forward pass waits for the update.
                read = (None if action is not None else
                        queue_q_values(learner.network, state.player.env.stack, learner.device))
                meter.add_loss(learner.update(draws.minibatch))
                draws = play_step(action if read is None else greedy(read()), ahead, config,
                                  state)
            else:
                if action is None:
                    action = greedy(q_values(learner.network, state.player.env.stack,
                                             learner.device))
                # With an update, the emulator thread plays step t (and, unless a save
                # comes next, makes step t+1's draws) while this one runs the update after
                # step t: its minibatch holds entries before t only and was drawn already.
                # The next step acts on the weights this update leaves, so the two threads
                # meet here. Without one, a thread would only add its handoff to the step.
                play = partial(play_step, action, ahead, config, state)
                if updating:
                    playing = emulator.submit(play)
                    meter.add_loss(learner.update(draws.minibatch))
                    draws = playing.result()
                else:
                    draws = play()
            learner.after_step(counters.step)
            if ends_epoch:
                counters.epoch += 1
                meter.end_epoch(state.log, counters, learner.updates, eps)
                if problem := learner.non_finite(state.log.epochs["loss_mean"][-1]):
                    checkpoint.save_diverged(run, attrs, state, meter.state())
                    raise Diverged(f"training diverged in epoch {counters.epoch} (step "
                                   f"{counters.step:,}): {problem}; saved what it needs for "
                                   f"inspection to {run.diverged}, and no snapshot of the epoch")
                if view:
                    view.end_epoch(state.log, learner.network)
                checkpoint.save_epoch(run, attrs, state)
            elif view:
                view.write(state.log)
            meter.maybe_report(counters, eps, state.log, config.train_steps, progress_s)


def queues_updates(device: torch.device) -> bool:
    """Whether an update on `device` returns once its work is queued, before it is done
    (CUDA), so that the emulator can play beside it in the loop's own thread."""
    return device.type == "cuda"


@dataclass
class Draws:
    """Agent step `counters.step`'s share of the agent's random numbers: epsilon-greedy's
    draw (None: act greedily) and the minibatch of the update after the step, if one
    follows. Neither needs the network, so they can be drawn while an update runs; they
    are drawn in Algorithm 1's order, so the run is the same either way."""

    action: int | None
    minibatch: Minibatch | None


def begin_step(config: Config, state: TrainingState) -> Draws:
    step, player, memory = state.counters.step, state.player, state.memory
    action = random_action(epsilon(config, step), player.env.n_actions, state.rng)
    # The step's entry starts with the frame seen now, before its minibatch is drawn:
    # the entry before it may be drawn, and its next state ends with this frame.
    memory.add_frame(player.env.frame, player.starts_episode)
    minibatch = None
    steps = step + 1  # counting this one
    if steps > config.replay_start_steps and steps % config.update_period_steps == 0:
        minibatch = memory.sample(config.minibatch_transitions, state.rng)
    return Draws(action, minibatch)


def play_step(action: int, ahead: bool, config: Config, state: TrainingState) -> Draws | None:
    """Play `action`, complete the step's replay entry, count; then the next step's
    draws if `ahead`."""
    step = state.player.step(action)
    state.memory.set_outcome(action, step.reward, step.terminal)
    state.counters.step += 1
    if step.episode:
        state.log.add_episode(step.episode, state.counters.step, state.counters.epoch + 1)
    return begin_step(config, state) if ahead else None
