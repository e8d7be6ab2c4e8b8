"""Throughput and memory figures for each piece of a run (`dqn bench`); not a test.

It answers "where does the time go": the bare emulator against our preprocessed
environment, a minibatch draw from a paper-sized replay memory, one learner update,
the whole training loop against the sum of its parts, and what resuming costs on disk.
Every figure carries its unit in its key. Targets: env_overhead_vs_emulator <= 0.15,
replay_bytes_per_transition_at_1M <= 7200.

    python -m dqn.bench --game Breakout --seconds 5
"""

from __future__ import annotations

import datetime
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import dqn
from dqn import h5io, presets
from dqn.atari import Atari, check_game, frame_skip
from dqn.learner import Learner
from dqn.replay import Minibatch, ReplayMemory
from dqn.train import Counters, play_randomly, resume_state, train

SEED = 0
ROUNDS = 5  # each timing is split into this many slices, alternated, median taken
PAPER_CAPACITY = presets.PAPER2013.replay_capacity_transitions  # 1M transitions
REPLAY_FILL_ENTRIES = 100_000  # enough that a draw misses the CPU caches, as at 1M
REAL_PLAY_STEPS = 5_000  # real frames, repeated to fill the memory quickly
EPOCH_ENTRIES = presets.PAPER2013.epoch_updates  # 2013: one update per step, so 50k
# A short `quick` run: 1000 random steps, then two epochs of 1000 updates. Only the
# epochs that start after replay start are timed, so the random prefix does not count.
# The epsilon schedule is pinned too (it sets how often the network picks an action),
# so that retuning the `quick` preset does not move this figure.
TRAIN_OVERRIDES = ["train_steps=3000", "replay_start_steps=1000", "epoch_updates=1000",
                   "heldout_collect_steps=300", "heldout_states=32",
                   "replay_capacity_transitions=5000", "epsilon_anneal_steps=20000"]


def run_benchmarks(game: str, device: torch.device, seconds: float) -> dict:
    """All figures, as a JSON-serialisable dict; each timing lasts about `seconds`."""
    check_game(game)
    started = time.perf_counter()
    figures = context_figures(game, device, seconds)
    figures.update(environment_figures(game, seconds))

    memory, n_actions = filled_memory(game)
    figures.update(replay_figures(memory, seconds))
    batch = memory.sample(presets.PAPER2013.minibatch_transitions, np.random.default_rng(SEED))
    figures.update(learner_figures(batch, n_actions, device, seconds))
    figures["replay_sample_vs_update_ratio"] = (
        figures["replay_sample_batch32_ms"] / 1000 * figures["learner_updates_per_s"])
    figures.update(resume_figures(game, memory, n_actions))
    del memory  # ~0.7 GB touched of a 7 GB allocation

    figures.update(train_figures(game, device))
    figures["train_overhead_vs_bare_update"] = (
        (1 / figures["train_agent_steps_per_s"])
        / (1 / figures["learner_updates_per_s"] + 1 / figures["env_agent_steps_per_s"]) - 1)
    figures["bench_wall_s"] = time.perf_counter() - started
    figures["load_average_1min_at_end"] = os.getloadavg()[0]
    return figures


# -- timing helpers --

def calls_per_s(work: Callable[[], object], seconds: float,
                sync: Callable[[], object] = lambda: None) -> float:
    """How often `work` runs per second, over a window of `seconds`.

    `sync` runs before the clock stops, so queued GPU work is counted.
    """
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        work()
        calls += 1
    sync()
    return calls / (time.perf_counter() - start)


def interleaved_rates(workloads: dict[str, Callable[[], object]], seconds: float,
                      sync: Callable[[], object] = lambda: None) -> dict[str, float]:
    """Median calls/s of each workload, measured in alternating slices.

    The machine is shared and noisy: alternating means a busy spell slows every
    workload a little instead of one a lot, and the median drops the spell.
    """
    rates: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(ROUNDS):
        for name, work in workloads.items():
            rates[name].append(calls_per_s(work, seconds / ROUNDS, sync))
    return {name: statistics.median(values) for name, values in rates.items()}


def median_call_s(work: Callable[[], object], seconds: float) -> float:
    """Median duration of one call of `work`, over a window of `seconds`."""
    durations = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        work()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def device_sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# -- 6. context --

def context_figures(game: str, device: torch.device, seconds: float) -> dict:
    return {
        "game": game,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "frame_skip_frames": frame_skip(game, presets.PAPER2013),
        "dqn_version": dqn.__version__,
        "torch_version": torch.__version__,
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds_per_timing": seconds,
        # Other processes on the machine skew every figure (torch's threads suffer
        # most); a load near or above cpu_count means the figures are not clean.
        "load_average_1min_at_start": os.getloadavg()[0],
    }


# -- 1. environment --

def environment_figures(game: str, seconds: float) -> dict:
    """The bare emulator against our environment, on the same game and frame skip."""
    paper = Atari(game, presets.PAPER2013, SEED)
    nature = Atari(game, presets.NATURE2015, SEED)
    # The emulator of a third Atari, driven bare: it is set up exactly as ours are
    # (seed, no sticky actions, minimal action set), whatever Atari's settings become.
    bare = Atari(game, presets.PAPER2013, SEED)
    bare.ale.reset_game()
    # The same pre-drawn random actions for all three, so drawing them costs nothing.
    plan = np.random.default_rng(SEED).integers(paper.n_actions, size=4096).tolist()
    rates = interleaved_rates({
        "raw": raw_stepper(bare, plan),
        "paper": agent_stepper(paper, plan),
        "nature": agent_stepper(nature, plan),
    }, seconds)
    raw_frames_per_s = rates["raw"] * bare.frame_skip
    return {
        "raw_emulator_frames_per_s": raw_frames_per_s,
        "raw_emulator_agent_steps_per_s": raw_frames_per_s / paper.frame_skip,
        "env_agent_steps_per_s": rates["paper"],
        "env_overhead_vs_emulator": raw_frames_per_s / paper.frame_skip / rates["paper"] - 1,
        "env_nature_agent_steps_per_s": rates["nature"],
        # Nature's no-op starts and life-loss episodes add emulator frames that are not
        # agent steps, so this overhead is more than the preprocessing alone.
        "env_nature_overhead_vs_emulator":
            raw_frames_per_s / nature.frame_skip / rates["nature"] - 1,
    }


def raw_stepper(env: Atari, plan: list[int]) -> Callable[[], None]:
    """One agent step of the bare emulator: frame_skip `act` calls, no screen read."""
    ale, skip = env.ale, env.frame_skip
    actions = itertools.cycle([env.actions[a] for a in plan])

    def step() -> None:
        action = next(actions)
        for _ in range(skip):
            ale.act(action)
            if ale.game_over():
                ale.reset_game()
    return step


def agent_stepper(env: Atari, plan: list[int]) -> Callable[[], None]:
    """One agent step of our environment, starting a new episode when one ends."""
    actions = itertools.cycle(plan)
    env.new_episode()

    def step() -> None:
        if env.step(next(actions))[1]:
            env.new_episode()
    return step


# -- 2. replay --

def play_randomly_entries(game: str, steps: int) -> tuple[dict[str, np.ndarray], int]:
    """The replay entries of `steps` steps of random play, as the training loop adds them."""
    env = Atari(game, presets.PAPER2013, SEED)
    entries = play_randomly(env, np.random.default_rng(SEED), steps).entries(0, steps)
    # The block is repeated back to back: end it with a terminal so each copy is a
    # sequence of whole episodes (every copy begins with an episode start).
    entries["terminals"][-1] = True
    return entries, env.n_actions


def filled_memory(game: str) -> tuple[ReplayMemory, int]:
    """A paper-sized memory (1M) holding REPLAY_FILL_ENTRIES entries of real play."""
    block, n_actions = play_randomly_entries(game, REAL_PLAY_STEPS)
    memory = ReplayMemory(PAPER_CAPACITY)  # np.zeros: pages are only touched when filled
    for start in range(0, REPLAY_FILL_ENTRIES, REAL_PLAY_STEPS):
        memory.put_entries(start, block)
    return memory, n_actions


def replay_figures(memory: ReplayMemory, seconds: float) -> dict:
    rng = np.random.default_rng(SEED)
    batch_size = presets.PAPER2013.minibatch_transitions
    return {
        "replay_bytes_per_transition_at_1M": memory.nbytes() / memory.capacity,
        "replay_sample_batch32_ms": 1000 * median_call_s(
            lambda: memory.sample(batch_size, rng), seconds),
    }


# -- 3. learner --

def learner_figures(batch: Minibatch, n_actions: int, device: torch.device, seconds: float) -> dict:
    """Updates/s on one fixed minibatch: the learner alone, no replay draw."""
    learners = {name: Learner(config, n_actions, device, SEED)
                for name, config in (("paper", presets.PAPER2013),
                                     ("nature", presets.NATURE2015))}
    for learner in learners.values():  # first calls pick kernels and allocate
        for _ in range(3):
            learner.update(batch)
    sync = device_sync(device)
    sync()
    rates = interleaved_rates(
        {name: lambda learner=learner: learner.update(batch) for name, learner in learners.items()},
        seconds, sync)
    return {"learner_updates_per_s": rates["paper"],
            "learner_updates_per_s_nature": rates["nature"]}


# -- 4. end to end --

def train_figures(game: str, device: torch.device) -> dict:
    """Agent steps/s of a short real run, over the epochs that begin after replay start."""
    config = presets.load("quick", TRAIN_OVERRIDES)
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        out = Path(tmp) / "run"
        train(game, "quick", config, SEED, out, device, progress_s=float("inf"))
        _, log = h5io.read(out / "train_log.h5", "train_log")
    end_steps = log["epochs/step"]
    start_steps = np.concatenate([[0], end_steps[:-1]])
    learning = start_steps >= config.replay_start_steps
    # Total steps over total time of those epochs: a rate of rates would weight
    # a short epoch like a long one.
    steps = (end_steps - start_steps)[learning].sum()
    wall = log["epochs/wall_s"][learning].sum()
    return {"train_agent_steps_per_s": float(steps / wall),
            "train_measured_steps": int(steps)}


# -- 5. resume --

def resume_figures(game: str, memory: ReplayMemory, n_actions: int) -> dict:
    """The files of one paper epoch: its replay delta (50k entries) and the resume state."""
    attrs = {**h5io.provenance(game, SEED, "paper2013", presets.PAPER2013.as_dict()),
             "epoch": 1, "step": EPOCH_ENTRIES, "update": EPOCH_ENTRIES,
             "start": 0, "stop": EPOCH_ENTRIES}
    delta = memory.entries(0, EPOCH_ENTRIES)  # what save_epoch hands to write_epoch
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        path = Path(tmp) / "replay_0001.h5"
        start = time.perf_counter()
        h5io.write(path, "replay_delta", attrs, delta, compress=True)
        write_s = time.perf_counter() - start
        delta_bytes = path.stat().st_size
        # A resume after a restart reads from disk, not from the page cache the write
        # just filled; the pages are clean after h5io's fsync, so they can be dropped.
        drop_from_page_cache(path)
        start = time.perf_counter()
        h5io.read(path, "replay_delta")
        read_s = time.perf_counter() - start
        state_bytes = resume_state_bytes(game, n_actions, Path(tmp) / "state_0001.h5", attrs)
    return {
        "resume_delta_write_s_per_epoch": write_s,
        "resume_delta_bytes_per_epoch": delta_bytes,
        "resume_delta_compression_ratio": sum(a.nbytes for a in delta.values()) / delta_bytes,
        "resume_delta_read_s_per_epoch": read_s,
        "resume_full_restore_s_estimate": read_s * PAPER_CAPACITY / EPOCH_ENTRIES,
        "resume_state_bytes": state_bytes,
    }


def resume_state_bytes(game: str, n_actions: int, path: Path, attrs: dict) -> int:
    """Size of a paper2013 resume state file: network, RMSProp averages, emulator."""
    env = Atari(game, presets.PAPER2013, SEED)
    env.new_episode()
    learner = Learner(presets.PAPER2013, n_actions, torch.device("cpu"), SEED)
    state_attrs, arrays = resume_state(Counters(), env, learner, ReplayMemory(1),
                                       np.random.default_rng(SEED))
    h5io.write(path, "resume_state", {**attrs, **state_attrs}, arrays)
    return path.stat().st_size


def drop_from_page_cache(path: Path) -> None:
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


if __name__ == "__main__":
    from dqn.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
