"""Throughput and memory figures for each piece of a run (`dqn bench`); not a test.

It answers "where does the time go": the bare emulator against our preprocessed
environment, a minibatch draw from a paper-sized replay memory against one learner
update, the real training loop against the bare update it runs, on 1 and 2 CPU threads,
and what resuming costs on disk. Every figure carries its unit in its key, and the
machine and code it was measured on are recorded with it. What the figures are held to:
the environment adds at most a tenth to the bare emulator (env_overhead_vs_emulator);
a transition takes one 84x84 frame and a few bytes (replay_bytes_per_transition_at_1M,
so that the paper's 1M fit in about 7 GB); a minibatch draw costs a small part of an
update (replay_sample_vs_update_ratio) and the loop a tenth at most beyond its updates
(train_overhead_vs_bare_update); the live view costs under 1% of an epoch
(events_share_of_paper_epoch; train_events_overhead_vs_no_events measures the same
directly, within a shared machine's noise); a video plays at least at the game's speed
(watch_vs_game_speed). The pieces the GPU device check (dqn.devicecheck) times are here
too: update_rates, greedy_action_ms, sample_to_device_ms and preset_loop_figures.

    python -m dqn bench --game Breakout --seconds 5
"""

from __future__ import annotations

import datetime
import itertools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

import dqn
from dqn import checkpoint, h5io, presets, provenance
from dqn.atari import Atari, frame_skip
from dqn.checkpoint import TrainingState
from dqn.devices import machine
from dqn.events import LiveView
from dqn.explore import greedy
from dqn.games import PAPER_GAMES, check_game
from dqn.learner import (
    CUBLAS_DETERMINISTIC_WORKSPACE,
    CUBLAS_WORKSPACE,
    GRAPH_WARMUP_UPDATES,
    Learner,
)
from dqn.networks import build, q_values
from dqn.play import Episode, Player
from dqn.replay import Minibatch, ReplayMemory
from dqn.train import random_play, train
from dqn.trainlog import Counters, TrainLog
from dqn.video import EMULATOR_FRAMES_PER_S, watch

SEED = 0
ROUNDS = 5  # each timing is split into this many slices, alternated, median taken
PAPER_CAPACITY = presets.PAPER2013.replay_capacity_transitions  # 1M transitions
REPLAY_FILL_ENTRIES = 100_000  # enough that a draw misses the CPU caches, as at 1M
REAL_PLAY_STEPS = 5_000  # real frames, repeated to fill the memory quickly
EPOCH_ENTRIES = presets.PAPER2013.epoch_updates  # 2013: one update per step, so 50k
THREAD_COUNTS = (1, 2)  # one training process on 1 and on 2 CPU threads
# The training loop is timed on short real runs of `dqn train` (preset quick: the 2013
# network, minibatch and optimiser, one update per step), each a single epoch: the
# fewest random steps a minibatch allows, then a fixed number of steps with an update
# each (the same work in every version and on every machine). No epoch is saved inside
# the timed span. Epsilon sits at its final 0.1, where a paper run spends most of its
# steps and 90% of them run the network once more to act.
LOOP_REPLAY_START_STEPS = presets.QUICK.minibatch_transitions
LOOP_UPDATES_PER_TIMING_S = 50
LOOP_MIN_UPDATES = 10
LOOP_ROUNDS = 3  # each round runs `dqn train` once per thread count, and once without events
# `dqn watch` is timed on a video of this many frames per second of timing (at
# --seconds 3: 150 frames, 10 s of video at frame skip 4), at least WATCH_MIN_FRAMES.
WATCH_FRAMES_PER_TIMING_S = 50
# About the length of a quick-preset Breakout training episode, in agent steps; the
# live view writes two scalars at each one's end.
EVENTS_EPISODE_STEPS = 200
WATCH_MIN_FRAMES = 15


def run_benchmarks(game: str, device: torch.device, seconds: float) -> dict:
    """All figures, as a JSON-serialisable dict; each timing lasts about `seconds`."""
    check_game(game, PAPER_GAMES)
    started = time.perf_counter()
    figures = context_figures(game, device, seconds)
    figures.update(environment_figures(game, seconds))

    memory, n_actions = filled_memory(game)
    figures["replay_bytes_per_transition_at_1M"] = memory.nbytes() / memory.capacity
    batch = memory.sample(presets.PAPER2013.minibatch_transitions, np.random.default_rng(SEED))
    figures.update(learner_figures(memory, batch, n_actions, device, seconds))
    figures.update(resume_figures(game, memory, n_actions))
    del memory  # ~0.7 GB touched of a 7 GB allocation

    figures.update(training_loop_figures(game, batch, n_actions, device, seconds))
    figures.update(events_figures(n_actions, device, figures["train_agent_steps_per_s"]))
    figures.update(watch_figures(game, device, seconds))
    figures["bench_wall_s"] = time.perf_counter() - started
    figures["load_average_1min_at_end"] = os.getloadavg()[0]
    return figures


# -- timing helpers --


def calls_per_s(
    work: Callable[[], object], seconds: float, sync: Callable[[], object] = lambda: None
) -> float:
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


def interleaved_rates(
    workloads: dict[str, Callable[[], object]],
    seconds: float,
    sync: Callable[[], object] = lambda: None,
) -> dict[str, float]:
    """Median calls/s of each workload, measured in alternating slices.

    The machine is shared and noisy: alternating means a busy spell slows every
    workload a little instead of one a lot, and the median drops the spell.
    """
    rates: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(ROUNDS):
        for name, work in workloads.items():
            rates[name].append(calls_per_s(work, seconds / ROUNDS, sync))
    return {name: statistics.median(values) for name, values in rates.items()}


def device_sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# -- 6. context --


def context_figures(game: str, device: torch.device, seconds: float) -> dict:
    """The machine and the code the figures come from, so runs can be compared."""
    return {
        "game": game,
        "device": str(device),
        # The CPU, its kernels' instruction set, torch's threads, the kernel settings and
        # the device's name, as every HDF5 file records them.
        "machine": machine(device),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "frame_skip_frames": frame_skip(game, presets.PAPER2013),
        "dqn_version": dqn.__version__,
        "git_commit": provenance.git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "timestamp_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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
    # The same pre-drawn random actions for all three, so drawing them costs nothing
    # (folded into Nature's set where Xitari's is smaller: Pong's three actions).
    plan = np.random.default_rng(SEED).integers(paper.n_actions, size=4096).tolist()
    rates = interleaved_rates(
        {
            "raw": raw_stepper(bare, plan),
            "paper": agent_stepper(paper, plan),
            "nature": agent_stepper(nature, [a % nature.n_actions for a in plan]),
        },
        seconds,
    )
    raw_frames_per_s = rates["raw"] * bare.frame_skip
    return {
        "raw_emulator_frames_per_s": raw_frames_per_s,
        "raw_emulator_agent_steps_per_s": raw_frames_per_s / paper.frame_skip,
        "env_agent_steps_per_s": rates["paper"],
        "env_overhead_vs_emulator": raw_frames_per_s / paper.frame_skip / rates["paper"] - 1,
        "env_nature_agent_steps_per_s": rates["nature"],
        # Nature's no-op starts and life-loss episodes add emulator frames that are not
        # agent steps, so this overhead is more than the preprocessing alone.
        "env_nature_overhead_vs_emulator": raw_frames_per_s / nature.frame_skip / rates["nature"]
        - 1,
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


def agent_stepper(env: Atari, plan: list[int]) -> Callable[[], object]:
    """One agent step of our environment as every loop of dqn plays it (`dqn.play`)."""
    actions = itertools.cycle(plan)
    player = Player(env)
    return lambda: player.step(next(actions))


# -- 2. replay: a paper-sized memory --


def play_randomly_entries(game: str, steps: int) -> tuple[dict[str, np.ndarray], int]:
    """The replay entries of `steps` steps of random play, as the training loop adds them."""
    env = Atari(game, presets.PAPER2013, SEED)
    entries = random_play(env, np.random.default_rng(SEED), steps).entries(0, steps)
    # The block is repeated back to back: end it with a terminal so each copy is a
    # sequence of whole episodes (every copy begins with an episode start).
    entries["terminals"][-1] = True
    return entries, env.n_actions


def filled_memory(game: str, entries: int = REPLAY_FILL_ENTRIES) -> tuple[ReplayMemory, int]:
    """A paper-sized memory (1M) holding `entries` entries of real play."""
    block_steps = min(REAL_PLAY_STEPS, entries)
    block, n_actions = play_randomly_entries(game, block_steps)
    memory = ReplayMemory(PAPER_CAPACITY)  # np.zeros: pages are only touched when filled
    for start in range(0, entries, block_steps):
        memory.put_entries(start, block)
    return memory, n_actions


# -- 3. one minibatch draw against one learner update --


def learner_figures(
    memory: ReplayMemory, batch: Minibatch, n_actions: int, device: torch.device, seconds: float
) -> dict:
    """Updates/s on one fixed minibatch (the learner alone), alternated with minibatch
    draws from the paper-sized memory, so their ratio comes from the same spells."""
    learners = {
        name: warm_learner(config, n_actions, device, batch)
        for name, config in (("paper", presets.PAPER2013), ("nature", presets.NATURE2015))
    }
    sync = device_sync(device)
    sync()
    rng = np.random.default_rng(SEED)
    workloads = {
        name: lambda learner=learner: learner.update(batch) for name, learner in learners.items()
    }
    workloads["sample"] = lambda: memory.sample(len(batch.actions), rng)
    rates = interleaved_rates(workloads, seconds, sync)
    return {
        "replay_sample_batch32_ms": 1000 / rates["sample"],
        "replay_sample_vs_update_ratio": rates["paper"] / rates["sample"],
        "learner_updates_per_s": rates["paper"],
        "learner_updates_per_s_nature": rates["nature"],
    }


def warm_learner(
    config: presets.Config, n_actions: int, device: torch.device, batch: Minibatch
) -> Learner:
    """A learner past its first updates, which pick kernels, allocate, and capture the
    update's CUDA graph (cuda_graph_update)."""
    learner = Learner(config, n_actions, device, SEED)
    for _ in range(GRAPH_WARMUP_UPDATES + 2):
        learner.update(batch)
    device_sync(device)()
    return learner


def update_rates(
    configs: dict[str, presets.Config],
    batch: Minibatch,
    n_actions: int,
    device: torch.device,
    seconds: float,
    deterministic: tuple[str, ...] = (),
) -> dict[str, float]:
    """Updates/s of a learner of each config on one fixed minibatch, alternated in
    slices; those named in `deterministic` run with torch's deterministic algorithms
    (what cuda_deterministic turns on), set around each of their calls."""
    workloads = {}
    for name, config in configs.items():
        learner = warm_learner(config, n_actions, device, batch)
        workloads[name] = (
            partial(deterministic_call, learner.update, batch)
            if name in deterministic
            else partial(learner.update, batch)
        )
    return interleaved_rates(workloads, seconds, device_sync(device))


def deterministic_call(work: Callable, *args):
    """`work(*args)` with deterministic algorithms, as cuda_deterministic runs (torch
    refuses cuBLAS calls in that mode unless CUBLAS_WORKSPACE_CONFIG is set)."""
    variable = os.environ.get(CUBLAS_WORKSPACE)
    os.environ[CUBLAS_WORKSPACE] = variable or CUBLAS_DETERMINISTIC_WORKSPACE
    torch.use_deterministic_algorithms(True)
    try:
        return work(*args)
    finally:
        torch.use_deterministic_algorithms(False)
        if variable is None:
            del os.environ[CUBLAS_WORKSPACE]


def greedy_action_ms(
    network: torch.nn.Module, stack: np.ndarray, device: torch.device, seconds: float
) -> float:
    """The greedy action's latency: the forward pass on one state and the read-back."""
    return 1000 / calls_per_s(lambda: greedy(q_values(network, stack, device)), seconds)


def sample_to_device_ms(memory: ReplayMemory, learner: Learner, seconds: float) -> float:
    """A minibatch draw with its copy to the learner's device, as an update makes it."""
    rng = np.random.default_rng(SEED)
    size = learner.config.minibatch_transitions
    return 1000 / calls_per_s(
        lambda: learner.to_device(memory.sample(size, rng)), seconds, device_sync(learner.device)
    )


def preset_loop_figures(
    game: str, preset: str, device: torch.device, updates: int, overrides: tuple[str, ...] = ()
) -> dict:
    """Agent steps/s and updates/s of a one-epoch run of `dqn train` with `preset`'s
    network, learner and update period: a minibatch's worth of random steps, then
    `updates` updates at the final epsilon (see training_loop_figures)."""
    base = presets.load(preset, list(overrides))
    start = base.minibatch_transitions
    steps = start + updates * base.update_period_steps
    config = base.with_overrides(
        [
            f"replay_start_steps={start}",
            f"epoch_updates={updates}",
            "epoch_counted_in=updates",  # one epoch of `updates`, whatever the preset's count
            f"train_steps={steps}",
            f"replay_capacity_transitions={steps}",
            "epsilon_anneal_steps=0",
            "heldout_collect_steps=40",
            "heldout_states=32",
        ]
    )
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        train(game, preset, config, SEED, Path(tmp) / "run", device, progress_s=float("inf"))
        _, log = h5io.read(Path(tmp) / "run" / "train_log.h5", "train_log")
    assert log["epochs/update"].tolist() == [updates], "one epoch per run"
    return {
        "agent_steps_per_s": float(log["epochs/steps_per_s"][0]),
        "updates_per_s": float(log["epochs/updates_per_s"][0]),
    }


# -- 4. the training loop against the bare update, on 1 and 2 threads --


def training_loop_figures(
    game: str, batch: Minibatch, n_actions: int, device: torch.device, seconds: float
) -> dict:
    """Agent steps/s of the real training loop against updates/s of the bare update.

    Both use the 2013 network, minibatches of 32 and `device`, and the loop does one
    update per agent step, so the loop's overhead is the ratio of the two, less 1: the
    emulator step, the action choice, the replay store and draw and the bookkeeping.
    Each thread count (1, 2 and torch's current one) gets a bare-update slice and a run
    of the loop in every round, alternated. The loop draws from a memory of a few
    hundred entries, which stay in the CPU caches; at 1M a draw costs
    replay_sample_batch32_ms (a replay_sample_vs_update_ratio share of an update).
    At torch's current thread count each round also runs the loop without its event
    files (`dqn train --no-tensorboard`), beside the loop with them: the live view's
    cost within an epoch.
    """
    run_s = seconds / 2
    config = loop_config(seconds)
    updates = config.epoch_updates
    learner = Learner(presets.PAPER2013, n_actions, device, SEED)
    sync = device_sync(device)
    default_threads = torch.get_num_threads()
    thread_counts = sorted({*THREAD_COUNTS, default_threads})
    bare: dict[int, list[float]] = {n: [] for n in thread_counts}
    loop: dict[int, list[float]] = {n: [] for n in thread_counts}
    no_events: list[float] = []
    try:
        for round_number in range(LOOP_ROUNDS):
            for threads in thread_counts:
                torch.set_num_threads(threads)
                bare[threads].append(calls_per_s(lambda: learner.update(batch), run_s, sync))
                # At the current thread count, with and without the event files back to
                # back, each first in turn: on a busy machine the order alone moves their
                # ratio (docs/benchmark.md).
                views = (
                    [True]
                    if threads != default_threads
                    else ([True, False] if round_number % 2 else [False, True])
                )
                for live_view in views:
                    (loop[threads] if live_view else no_events).append(
                        loop_steps_per_s(game, config, device, live_view)
                    )
    finally:
        torch.set_num_threads(default_threads)
    figures = {"train_updates_per_run": updates}
    for threads in thread_counts:
        figures[f"train_bare_updates_per_s_threads{threads}"] = statistics.median(bare[threads])
        figures[f"train_agent_steps_per_s_threads{threads}"] = statistics.median(loop[threads])
        figures[f"train_overhead_vs_bare_update_threads{threads}"] = (
            statistics.median(bare[threads]) / statistics.median(loop[threads]) - 1
        )
    for name in ("train_bare_updates_per_s", "train_agent_steps_per_s"):
        figures[f"{name}_2_vs_1_threads"] = (
            figures[f"{name}_threads2"] / figures[f"{name}_threads1"]
        )
    # Unsuffixed: at torch's current thread count (the --threads given to dqn bench).
    for name in (
        "train_bare_updates_per_s",
        "train_agent_steps_per_s",
        "train_overhead_vs_bare_update",
    ):
        figures[name] = figures[f"{name}_threads{default_threads}"]
    figures["train_agent_steps_per_s_no_events"] = statistics.median(no_events)
    figures["train_events_overhead_vs_no_events"] = (
        statistics.median(no_events) / figures["train_agent_steps_per_s"] - 1
    )
    return figures


def loop_config(seconds: float) -> presets.Config:
    """The one-epoch runs of the timings (see training_loop_figures)."""
    updates = max(LOOP_MIN_UPDATES, round(LOOP_UPDATES_PER_TIMING_S * seconds))
    return presets.load(
        "quick",
        [
            f"replay_start_steps={LOOP_REPLAY_START_STEPS}",
            f"epoch_updates={updates}",
            f"train_steps={LOOP_REPLAY_START_STEPS + updates}",
            f"replay_capacity_transitions={LOOP_REPLAY_START_STEPS + updates}",
            "epsilon_anneal_steps=0",
            "heldout_collect_steps=40",
            "heldout_states=32",
        ],
    )


def loop_steps_per_s(
    game: str, config: presets.Config, device: torch.device, live_view: bool = True
) -> float:
    """Steps with an update per second in a one-epoch run of `dqn train` (see above).

    The epoch's time includes the replay-start steps but only the steps with an update
    are counted: the figure errs slow, by about 32 emulator steps per run.
    """
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        out = Path(tmp) / "run"
        train(
            game, "quick", config, SEED, out, device, progress_s=float("inf"), live_view=live_view
        )
        _, log = h5io.read(out / "train_log.h5", "train_log")
    assert log["epochs/update"].tolist() == [config.epoch_updates], "one epoch per run"
    return config.epoch_updates / float(log["epochs/wall_s"][0])


# -- 5. resume --


def resume_figures(game: str, memory: ReplayMemory, n_actions: int) -> dict:
    """The files of one paper epoch: its replay delta (50k entries) and the resume state."""
    cpu = torch.device("cpu")  # where the learner of resume_state_bytes computes
    attrs = {
        **provenance.record(game, SEED, "paper2013", presets.PAPER2013.as_dict(), machine(cpu)),
        "epoch": 1,
        "step": EPOCH_ENTRIES,
        "update": EPOCH_ENTRIES,
    }
    delta = memory.entries(0, EPOCH_ENTRIES)  # what save_epoch hands to write_epoch
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        path = Path(tmp) / "replay_0001.h5"
        start = time.perf_counter()
        h5io.write(
            path, "replay_delta", {**attrs, "start": 0, "stop": EPOCH_ENTRIES}, delta, compress=True
        )
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
    """Size of a paper2013 resume state file: RMSProp averages, emulator, RNGs (the
    network's weights are the snapshot's)."""
    state = TrainingState(
        Counters(),
        Player(Atari(game, presets.PAPER2013, SEED)),
        Learner(presets.PAPER2013, n_actions, torch.device("cpu"), SEED),
        ReplayMemory(1),
        np.random.default_rng(SEED),
        TrainLog(),
    )
    h5io.write(path, "resume_state", *checkpoint.save(state, attrs, 0)["resume_state"])
    return path.stat().st_size


def drop_from_page_cache(path: Path) -> None:
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- 7. the views of a run: its live view, and its video --


def events_figures(n_actions: int, device: torch.device, steps_per_s: float) -> dict:
    """The live view's own work over one paper epoch (50k agent steps), timed alone
    where the loop timings above cannot resolve 1% on a shared machine: its call after
    every step, with a training episode ending every EVENTS_EPISODE_STEPS steps (the
    writer's thread drains its queue inside the timing), then the epoch's end (the
    average max-Q of 2013's 500 held-out states on the 2013 network, and a flush). Its
    share of the epoch's time at the loop's steps/s is the view's overhead."""
    states = np.random.default_rng(SEED).integers(
        0, 256, (presets.PAPER2013.heldout_states, 4, 84, 84), dtype=np.uint8
    )
    network = build("paper2013", n_actions).to(device)
    log = TrainLog()
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        view = LiveView(Path(tmp), log, 0, states, device)
        start = time.perf_counter()
        for step in range(1, EPOCH_ENTRIES + 1):
            if step % EVENTS_EPISODE_STEPS == 0:
                log.add_episode(Episode(1.0, EVENTS_EPISODE_STEPS, True), step, 1)
            view.write(log)
        view.writer.flush()
        steps_s = time.perf_counter() - start
        log.add_epoch({name: 1 for name in log.epochs})
        start = time.perf_counter()
        view.end_epoch(log, network)
        epoch_end_s = time.perf_counter() - start
        view.close()
    return {
        "events_write_us_per_step": 1e6 * steps_s / EPOCH_ENTRIES,
        "events_epoch_end_s": epoch_end_s,
        "events_share_of_paper_epoch": (steps_s + epoch_end_s) / (EPOCH_ENTRIES / steps_per_s),
    }


def watch_figures(game: str, device: torch.device, seconds: float) -> dict:
    """`dqn watch` on a snapshot of a one-epoch run: video frames per second against the
    game's own speed (>= 1: the video is made faster than the game plays), and the MP4's
    bytes per frame."""
    with tempfile.TemporaryDirectory(prefix="dqn-bench-") as tmp:
        run, video = Path(tmp) / "run", Path(tmp) / "video.mp4"
        train(
            game,
            "quick",
            loop_config(seconds),
            SEED,
            run,
            device,
            progress_s=float("inf"),
            live_view=False,
        )
        frames = max(WATCH_MIN_FRAMES, round(WATCH_FRAMES_PER_TIMING_S * seconds))
        start = time.perf_counter()
        frames = watch(run, video, device, episodes=frames, max_steps=frames)
        frames_per_s = frames / (time.perf_counter() - start)
        size_bytes = video.stat().st_size
    return {
        "watch_frames_per_s": frames_per_s,
        "watch_vs_game_speed": frames_per_s
        / (EMULATOR_FRAMES_PER_S / frame_skip(game, presets.PAPER2013)),
        "watch_mp4_bytes_per_frame": size_bytes / frames,
    }
