"""The training loop: held-out states, then Algorithm 1 of the 2013 paper in epochs.

The loop in `train` is Algorithm 1: act epsilon-greedily, store the transition, sample
a minibatch, take a gradient step; the emulator plays each step in a thread of its own
while the update runs, with the same results as one after the other (see the loop).
Every `epoch_updates` updates it writes a snapshot and the resume state; run again
after being killed, it continues from the newest snapshot and, on the CPU, ends with
the same weights as an uninterrupted run.

SIGTERM (how SLURM ends a job at its time limit or on preemption, a grace period before
SIGKILL) and SIGINT stop the loop between two steps: it saves everything since the
newest snapshot to one file and exits with 128 + the signal's number, so a scheduler
retries the job and the retry continues from that very step.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dqn import h5io, seeding
from dqn.games import Env, make_env
from dqn.errors import DataFileError, Stopped
from dqn.explore import epsilon, random_action
from dqn.learner import Learner
from dqn.presets import Config
from dqn.replay import Minibatch, ReplayMemory
from dqn.rundir import RunDir, load_snapshot, load_weights

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Counters:
    """Where a run stands; saved with every epoch so a resume continues exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # agent steps taken in training
    episode: int = 0  # training episodes completed
    episode_return: float = 0.0  # unclipped return of the episode in progress
    episode_steps: int = 0
    next_is_episode_start: bool = True


@dataclass
class TrainLog:
    """Per-episode and per-epoch records, rewritten as train_log.h5 every epoch."""

    episodes: dict[str, list] = field(default_factory=lambda: {
        "return": [], "length_steps": [], "end_step": [], "epoch": [], "game_over": []})
    epochs: dict[str, list] = field(default_factory=lambda: {
        "epoch": [], "step": [], "update": [], "episodes": [], "loss_mean": [],
        "epsilon": [], "steps_per_s": [], "updates_per_s": [], "wall_s": []})

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{group}/{name}": np.asarray(values, np.float64 if name in FLOAT_COLUMNS else np.int64)
                for group in ("episodes", "epochs")
                for name, values in getattr(self, group).items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], last_epoch: int) -> "TrainLog":
        """The log as it stood when epoch `last_epoch` was committed."""
        log = cls()
        for group in ("episodes", "epochs"):
            table = getattr(log, group)
            keep = arrays[f"{group}/epoch"] <= last_epoch
            for name in table:
                table[name] = arrays[f"{group}/{name}"][keep].tolist()
        return log


FLOAT_COLUMNS = {"return", "loss_mean", "epsilon", "steps_per_s", "updates_per_s", "wall_s"}


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


def play_randomly(env: Env, rng: np.random.Generator, steps: int) -> ReplayMemory:
    """A replay memory holding `steps` steps of a uniform random policy, stored as the
    training loop stores them."""
    memory = ReplayMemory(steps)
    env.new_episode()
    episode_start = True
    for _ in range(steps):
        memory.add_frame(env.frame, episode_start)
        action = int(rng.integers(env.n_actions))
        reward, terminal = env.step(action)
        memory.set_outcome(action, reward, terminal)
        episode_start = terminal
        if terminal:
            env.new_episode()
    return memory


def collect_heldout_states(game: str, config: Config, seed: int) -> np.ndarray:
    """2013 §5.1: a fixed set of states from a random policy, drawn before training.

    As DQN 3.0 does, play randomly, keep the frames in a replay memory and draw the set
    from it, so the held-out stacks are built exactly like training stacks.
    """
    env = make_env(game, config, seeding.derive(seed, "heldout_env"))
    rng = seeding.generator(seed, "heldout_policy")
    memory = play_randomly(env, rng, config.heldout_collect_steps)
    return memory.sample(config.heldout_states, rng).states


def train(game: str, preset: str, config: Config, seed: int, out: Path,
          device: torch.device, progress_s: float = 10.0) -> None:
    """Train, or continue a run of `out`; raise Stopped after saving if signalled."""
    with stop_signals() as received:
        _train(game, preset, config, seed, out, device, progress_s, received)


def _train(game: str, preset: str, config: Config, seed: int, out: Path,
           device: torch.device, progress_s: float, received: list[int]) -> None:
    run = RunDir(out)
    attrs = h5io.provenance(game, seed, preset, config.as_dict())
    run.claim(attrs)
    run.root.mkdir(parents=True, exist_ok=True)
    if not run.heldout.exists():
        say(f"collecting {config.heldout_states} held-out states "
            f"({config.heldout_collect_steps} random steps)")
        h5io.write(run.heldout, "heldout", attrs,
                   {"states": collect_heldout_states(game, config, seed)})

    env = make_env(game, config, seeding.derive(seed, "train_env"))
    learner = Learner(config, env.n_actions, device, seeding.derive(seed, "network"))
    memory = ReplayMemory(config.replay_capacity_transitions)
    rng = seeding.generator(seed, "agent")  # exploration and minibatch draws
    counters, log = Counters(), TrainLog()
    epochs = run.snapshot_epochs()
    if epochs and h5io.read_attrs(run.snapshot(epochs[-1]), "snapshot")["step"] >= config.train_steps:
        say(f"{run.root}: complete ({run.snapshot(epochs[-1])} is the last snapshot)")
        if not run.completion.exists():  # a run that was complete before the file was lost
            mark_complete(run, attrs, epochs[-1])
        return
    if epochs:
        counters, log = resume(run, epochs[-1], env, learner, memory, rng)
    else:
        run.prune(0, 0)  # keeps only an interrupt file from before the first snapshot
    epoch_so_far = None  # the Meter's record of the epoch in progress, from an interrupt
    if run.interrupt.exists():
        counters, log, epoch_so_far = resume_interrupted(run, env, learner, memory, rng)
        say(f"resumed from {run.interrupt} at step {counters.step}")
    elif epochs:
        say(f"resumed from {run.snapshot(counters.epoch)} at step {counters.step}")
    else:
        env.new_episode()

    meter = Meter(counters, learner.updates, device)
    if epoch_so_far:
        meter.restore(epoch_so_far)

    # One thread for the emulator: it plays a step while its update runs (see below).
    # The ALE holds Python's GIL while it emulates, but torch's kernels do not, so the
    # two overlap. Measured on 2 CPU cores: the loop's overhead over the bare update
    # falls from 13-15% to 8-10% with 1 torch thread; with 2 it is about the same.
    with ThreadPoolExecutor(1, thread_name_prefix="dqn-emulator") as emulator:
        draws = None  # the step's draws, when the emulator thread made them ahead
        while counters.step < config.train_steps:
            if received and draws is None:
                save_interrupted(run, attrs, counters, log, env, learner, memory, rng, meter)
                raise Stopped(received[0], f"{signal.Signals(received[0]).name} at step "
                              f"{counters.step:,}: saved {run.interrupt}; run the same "
                              "command again to continue from there")
            eps = epsilon(config, counters.step)
            draws = draws or begin_step(config, counters, env, memory, rng)
            updating = draws.minibatch is not None
            ends_epoch = (counters.step + 1 == config.train_steps or updating
                          and (learner.updates + 1) % config.epoch_updates == 0)
            # Algorithm 1: with probability epsilon a random action (drawn already), else
            # argmax_a Q(phi, a).
            action = draws.action
            if action is None:
                action = learner.greedy_action(env.stack)
            # With an update, the emulator thread plays step t (and, unless a save comes
            # next, makes step t+1's draws) while this one runs the update after step t:
            # its minibatch holds entries before t only and was drawn already. The next
            # step acts on the weights this update leaves, so the two threads meet here.
            # Without one, a thread would only add its handoff to the step.
            play = partial(play_step, action, updating and not (ends_epoch or received),
                           config, counters, log, env, memory, rng)
            if updating:
                playing = emulator.submit(play)
                meter.add_loss(learner.update(draws.minibatch))
                draws = playing.result()
            else:
                draws = play()
            if ends_epoch:
                counters.epoch += 1
                meter.end_epoch(log, counters, learner.updates, eps)
                save_epoch(run, attrs, counters, log, env, learner, memory, rng)
                say(meter.epoch_line(log))
            meter.maybe_report(counters, eps, log, config.train_steps, progress_s)
    mark_complete(run, attrs, counters.epoch)


def mark_complete(run: RunDir, attrs: dict, epoch: int) -> None:
    """Write the run's completion file, naming its last snapshot: what the workflow
    waits for, so that no rule needs to know how many epochs a preset makes."""
    snapshot = h5io.read_attrs(run.snapshot(epoch), "snapshot")
    h5io.write(run.completion, "complete", {
        **attrs, "epoch": epoch, "step": snapshot["step"], "update": snapshot["update"],
        "snapshot": str(run.snapshot(epoch).relative_to(run.root))}, {})


@dataclass
class Draws:
    """Agent step `counters.step`'s share of the agent's random numbers: epsilon-greedy's
    draw (None: act greedily) and the minibatch of the update after the step, if one
    follows. Neither needs the network, so they can be drawn while an update runs; they
    are drawn in Algorithm 1's order, so the run is the same either way."""

    action: int | None
    minibatch: Minibatch | None


def begin_step(config: Config, counters: Counters, env: Env, memory: ReplayMemory,
               rng: np.random.Generator) -> Draws:
    action = random_action(epsilon(config, counters.step), env.n_actions, rng)
    # The step's entry starts with the frame seen now, before its minibatch is drawn:
    # the entry before it may be drawn, and its next state ends with this frame.
    memory.add_frame(env.frame, counters.next_is_episode_start)
    minibatch = None
    steps = counters.step + 1  # counting this one
    if steps > config.replay_start_steps and steps % config.update_period_steps == 0:
        minibatch = memory.sample(config.minibatch_transitions, rng)
    return Draws(action, minibatch)


def play_step(action: int, ahead: bool, config: Config, counters: Counters, log: TrainLog,
              env: Env, memory: ReplayMemory, rng: np.random.Generator) -> Draws | None:
    """Play `action`, complete the step's replay entry, count; then the next step's
    draws if `ahead`."""
    reward, terminal = env.step(action)
    memory.set_outcome(action, reward, terminal)
    counters.step += 1
    counters.episode_return += reward
    counters.episode_steps += 1
    counters.next_is_episode_start = terminal
    if terminal:
        log_episode(log, counters, env.game_over)
        env.new_episode()
    return begin_step(config, counters, env, memory, rng) if ahead else None


def log_episode(log: TrainLog, counters: Counters, game_over: bool) -> None:
    """One training episode; `game_over` tells a whole game's end from a lost life's
    (Nature), so that a game's return is the sum of its episodes up to one that ends it."""
    counters.episode += 1
    row = {"return": counters.episode_return, "length_steps": counters.episode_steps,
           "end_step": counters.step, "epoch": counters.epoch + 1, "game_over": game_over}
    for name, value in row.items():
        log.episodes[name].append(value)
    counters.episode_return, counters.episode_steps = 0.0, 0


def checkpoint(attrs: dict, counters: Counters, log: TrainLog, env: Env, learner: Learner,
               memory: ReplayMemory, rng: np.random.Generator, since_epoch: int) -> dict:
    """What a resume needs, as {part: (attrs, arrays)} for the parts delta (the replay
    entries added since epoch `since_epoch` ended), state, log and snapshot (the weights)."""
    since_step = log.epochs["step"][since_epoch - 1] if since_epoch else 0
    # One replay entry per agent step, so the entries since a step start at that step.
    start = max(since_step, memory.added - memory.size)
    counter_attrs = {**attrs, "epoch": counters.epoch, "step": counters.step,
                     "update": learner.updates}
    state_attrs, state = resume_state(counters, env, learner, memory, rng)
    weights = {f"weights/{name}": t.detach().cpu().numpy()
               for name, t in learner.network.state_dict().items()}
    return {
        "delta": ({**counter_attrs, "start": start, "stop": memory.added},
                  memory.entries(start, memory.added)),
        "state": ({**counter_attrs, **state_attrs}, state),
        "log": (counter_attrs, log.arrays()),
        "snapshot": (counter_attrs, weights),
    }


def save_epoch(run: RunDir, attrs: dict, counters: Counters, log: TrainLog, env: Env,
               learner: Learner, memory: ReplayMemory, rng: np.random.Generator) -> None:
    epoch = counters.epoch
    run.write_epoch(epoch, **checkpoint(attrs, counters, log, env, learner, memory, rng,
                                        since_epoch=epoch - 1))
    run.prune(epoch, memory.added - memory.size)


def save_interrupted(run: RunDir, attrs: dict, counters: Counters, log: TrainLog, env: Env,
                     learner: Learner, memory: ReplayMemory, rng: np.random.Generator,
                     meter: "Meter") -> None:
    """Everything since the newest snapshot, in one file written atomically: the parts of
    an epoch (their arrays under part/...) and the Meter's record of the epoch so far."""
    parts = checkpoint(attrs, counters, log, env, learner, memory, rng,
                       since_epoch=counters.epoch)
    merged = {"meter": json.dumps(meter.state())}
    arrays = {}
    for part, (part_attrs, part_arrays) in parts.items():
        merged.update(part_attrs)
        arrays.update({f"{part}/{name}": value for name, value in part_arrays.items()})
    h5io.write(run.interrupt, "interrupted", merged, arrays, compress=True)


def resume_state(counters: Counters, env: Env, learner: Learner, memory: ReplayMemory,
                 rng: np.random.Generator) -> tuple[dict, dict[str, np.ndarray]]:
    """Everything but the replay frames that a resume needs, as (attrs, arrays)."""
    env_arrays, env_values = env.get_state()
    arrays = {
        f"learner/{name}/{i:03d}": t.detach().cpu().numpy()
        for name, tensors in learner.state()["tensors"].items() for i, t in enumerate(tensors)
    }
    arrays.update({f"env/{name}": value for name, value in env_arrays.items()})
    attrs = {
        "counters": json.dumps(asdict(counters)),
        "env": json.dumps(env_values),
        "agent_rng": json.dumps(rng.bit_generator.state),
        "replay_added": memory.added,
    }
    return attrs, arrays


def restore_state(attrs: dict, arrays: dict[str, np.ndarray], env: Env, learner: Learner,
                  rng: np.random.Generator) -> Counters:
    """The inverse of `resume_state`: put learner, emulator and RNG back; the counters."""
    tensors: dict[str, list] = {}
    for name in sorted(k for k in arrays if k.startswith("learner/")):
        tensors.setdefault(name.split("/")[1], []).append(arrays[name])
    learner.load_state({"tensors": tensors, "updates": attrs["update"]})
    env.set_state({name.removeprefix("env/"): value for name, value in arrays.items()
                   if name.startswith("env/")}, json.loads(attrs["env"]))
    rng.bit_generator.state = json.loads(attrs["agent_rng"])
    return Counters(**json.loads(attrs["counters"]))


def resume(run: RunDir, epoch: int, env: Env, learner: Learner, memory: ReplayMemory,
           rng: np.random.Generator) -> tuple[Counters, TrainLog]:
    """Put every piece of state back as it was when `epoch` was committed."""
    load_snapshot(run.snapshot(epoch), learner.network)
    attrs, arrays = h5io.read(run.state(epoch), "resume_state")
    counters = restore_state(attrs, arrays, env, learner, rng)

    added = int(attrs["replay_added"])
    oldest = added - min(added, memory.capacity)
    expected = oldest  # the next entry the ring needs: deltas must join up from there
    for path in run.replay_deltas(epoch):
        delta_attrs, delta = h5io.read(path, "replay_delta")
        start, stop = int(delta_attrs["start"]), int(delta_attrs["stop"])
        if stop <= expected:
            continue
        if start > expected:
            raise DataFileError(f"{path}: starts at replay entry {start}, but entries "
                                f"{expected}..{start - 1} are in no delta file")
        skip = expected - start
        memory.put_entries(expected, {k: v[skip:] for k, v in delta.items()})
        expected = stop
    if expected != added:
        raise DataFileError(
            f"{run.root / 'resume'}: the replay deltas end at entry {expected}, "
            f"but {run.state(epoch)} expects {added}")
    run.prune(epoch, oldest)
    _, log_arrays = h5io.read(run.log, "train_log")
    return counters, TrainLog.from_arrays(log_arrays, epoch)


def resume_interrupted(run: RunDir, env: Env, learner: Learner, memory: ReplayMemory,
                       rng: np.random.Generator) -> tuple[Counters, TrainLog, dict]:
    """Continue from the step a signal stopped at, on top of the newest epoch (`memory`
    holds that epoch's replay entries already); also return the Meter's state."""
    path = run.interrupt
    attrs, arrays = h5io.read(path, "interrupted")
    part = {name: {key.removeprefix(f"{name}/"): value for key, value in arrays.items()
                   if key.startswith(f"{name}/")}
            for name in ("delta", "state", "log", "snapshot")}
    load_weights(path, part["snapshot"], learner.network)
    counters = restore_state(attrs, part["state"], env, learner, rng)
    start, added = int(attrs["start"]), int(attrs["replay_added"])
    if start > max(memory.added, added - min(added, memory.capacity)):
        raise DataFileError(f"{path}: its replay entries start at {start}, but the memory "
                            f"restored from epoch {counters.epoch} ends at {memory.added}")
    memory.put_entries(start, part["delta"])
    # The episodes of the epoch in progress are numbered counters.epoch + 1.
    log = TrainLog.from_arrays(part["log"], counters.epoch + 1)
    return counters, log, json.loads(attrs["meter"])


class Meter:
    """Throughput, loss and the progress line (steps, episodes, return, epsilon, ETA)."""

    def __init__(self, counters: Counters, updates: int, device: torch.device):
        self.report_time = time.monotonic()
        self.epoch_start = (time.monotonic(), counters.step, updates)
        self.report_step = counters.step
        # Summed on the device: reading a GPU loss every update would wait for the GPU.
        self.loss_sum = torch.zeros((), device=device)
        self.losses = 0

    def state(self) -> dict:
        """The epoch in progress (its losses, time and start), for an interrupt file."""
        start_time, start_step, start_updates = self.epoch_start
        return {"loss_sum": float(self.loss_sum), "losses": self.losses,
                "epoch_elapsed_s": time.monotonic() - start_time,
                "epoch_start_step": start_step, "epoch_start_update": start_updates}

    def restore(self, state: dict) -> None:
        """Continue the epoch of `state`: its loss mean stays exact, and its throughput
        counts the time before the stop, not the time the run was stopped."""
        self.loss_sum.fill_(state["loss_sum"])
        self.losses = int(state["losses"])
        self.epoch_start = (time.monotonic() - state["epoch_elapsed_s"],
                            int(state["epoch_start_step"]), int(state["epoch_start_update"]))

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.losses += 1

    def end_epoch(self, log: TrainLog, counters: Counters, updates: int, eps: float) -> None:
        now = time.monotonic()
        start_time, start_step, start_updates = self.epoch_start
        wall = max(now - start_time, 1e-9)
        row = {
            "epoch": counters.epoch, "step": counters.step, "update": updates,
            "episodes": counters.episode,
            "loss_mean": float(self.loss_sum) / max(1, self.losses),
            "epsilon": eps, "steps_per_s": (counters.step - start_step) / wall,
            "updates_per_s": (updates - start_updates) / wall, "wall_s": wall,
        }
        for name, value in row.items():
            log.epochs[name].append(value)
        self.epoch_start = (now, counters.step, updates)
        self.loss_sum.zero_()
        self.losses = 0

    def epoch_line(self, log: TrainLog) -> str:
        e = {name: values[-1] for name, values in log.epochs.items()}
        return (f"epoch {e['epoch']} done: step {e['step']:,} update {e['update']:,} "
                f"loss {e['loss_mean']:.4g} epsilon {e['epsilon']:.3f} "
                f"{e['steps_per_s']:.0f} steps/s {e['updates_per_s']:.0f} updates/s")

    def maybe_report(self, counters: Counters, eps: float, log: TrainLog, total_steps: int,
                     interval_s: float) -> None:
        now = time.monotonic()
        if now - self.report_time < interval_s:
            return
        rate = (counters.step - self.report_step) / (now - self.report_time)
        recent = log.episodes["return"][-20:]
        mean_return = f"{np.mean(recent):.1f}" if recent else "-"
        eta_s = (total_steps - counters.step) / max(rate, 1e-9)
        say(f"step {counters.step:,}/{total_steps:,} ({100 * counters.step / total_steps:.1f}%) "
            f"epoch {counters.epoch + 1} episodes {counters.episode} "
            f"mean return (last {len(recent)}) {mean_return} epsilon {eps:.3f} "
            f"{rate:.0f} steps/s ETA {_duration(eta_s)}")
        self.report_time, self.report_step = now, counters.step


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
