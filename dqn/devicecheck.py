"""The device check: everything the CUDA path must show, measured in one call
on a lent GPU machine, written to one JSON summary and a short markdown table.

    scripts/device-check --out DIR               # CUDA; DIR defaults to $OUT
    scripts/device-check --device cpu --out DIR  # the small CPU form (the test suite's)

Its sections, each kept when another fails (the error's text stands in its place), the
JSON rewritten after each so that a call cut short still leaves what it measured:
- facts: torch, CUDA, cuDNN and driver versions, the device and its memory, the CPUs,
  the commit, and each dependency's version against pyproject.toml's bounds;
- speed: the bare emulator's agent steps/s on one core, and as ratios to it, the update
  rate of each preset, the greedy action's latency, a minibatch draw with its copy to the
  device, and the training loop's agent steps/s of one job alone; on CUDA also the update
  as a CUDA graph (cuda_graph_update: speed, and weights against the plain update),
  deterministic algorithms (cuda_deterministic: their cost), and the loop with its
  minibatches copied from pageable host memory (what pinned memory gains);
- sharing: the paper's 7 games trained at once on the one GPU, as `jobs_per_gpu: 7`
  places them (7 `dqn train` processes), each against the same job alone, with
  nvidia-smi's utilisation and memory sampled meanwhile;
- correctness: the same short training on the CPU and on the device (see the
  tolerances below);
- resume: runs killed with SIGKILL and resumed against uninterrupted ones, and on CUDA
  two uninterrupted ones against each other, with and without cuda_deterministic, of the
  ci preset (the 2013 method) and of a shortened nature2015 (its target network,
  centred RMSProp, life-loss episodes and the terminal's own step);
- learning: a few minutes of paper2013 on Breakout (trained beside the two sections
  before it): the held-out average max-Q stays bounded and rises (the snapshots made by
  the check's deadline, DEADLINE_S, where it runs on: cut_short).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from dqn import bench, h5io, presets, provenance, wheels
from dqn import train as training
from dqn.atomic import atomic_write
from dqn.devices import machine
from dqn.evaluate import TrainedRun
from dqn.games import PAPER_GAMES, make_env
from dqn.learner import CUBLAS_WORKSPACE, Learner
from dqn.networks import average_max_q
from dqn.rundir import RunDir

SUMMARY, TABLE = wheels.SUMMARY, "device_check.md"
GAME = "Breakout"  # of the speed, correctness, resume and learning sections
PRESETS = {"paper2013": presets.PAPER2013, "nature2015": presets.NATURE2015}
# The project's goals for one job on one H200 (docs/benchmark.md, with their anchors).
NATURE_STEPS_PER_S_GOAL = 1_200
PAPER_UPDATES_PER_S_GOAL = 700
SHARED_VS_ALONE_GOAL = 0.70
# Correctness: the same training on the CPU and the device, with epsilon 1 throughout, so
# both play the same actions into the same replay memory and draw the same minibatches;
# only the arithmetic differs. The held-out average max-Q after the updates may differ by
# these fractions. Measured on the CPU with the 2013 network and learner, 500 updates on
# one set of minibatches: float32 against float64 moves it by 3.3e-7 (about 5 times
# float32's unit roundoff, 2^-24: rounding is not amplified much), and weights perturbed
# once by 2^-11 relative by 6.7e-3. cuDNN runs float32 convolutions in TF32 by default,
# whose unit roundoff is 2^-11, 2^13 times float32's: the same amplification puts TF32's
# drift near 3e-3. A wrong copy, scale, layout or order moves it by tens of percent.
TF32_TOLERANCE = 1e-2  # the device as training runs it (cuDNN's TF32)
FP32_TOLERANCE = 1e-5  # the device without TF32; on the CPU, another thread count
SAMPLE_S = 0.5  # nvidia-smi's sampling interval
JOB_TIMEOUT_S = 420
# The device call that runs the check kills it at 540 s (its timeout_s), and only what is
# in $OUT then comes back. So every wait ends this many seconds after the script started:
# the glance is then stopped and its snapshots scored, and the summary written, well
# within the rest.
DEADLINE_S = 480
STOP_GRACE_S = 20  # for a job stopped with SIGTERM to save its interrupt file and exit


@dataclass(frozen=True)
class Sizes:
    """How much of each section a form runs."""

    timing_s: float  # each speed timing
    replay_entries: int  # real play in the paper-sized memory the draws come from
    loop_updates: int  # one-epoch loop runs of each preset
    graph_updates: int  # updates compared, plain update against CUDA graph
    sharing_games: tuple[str, ...]
    sharing_replay_start_steps: int
    sharing_epoch_updates: int  # two epochs; the second one is timed
    correctness_updates: int
    resume_overrides: tuple[str, ...]  # of preset ci
    # of preset nature2015 (an update every 4 steps), its replay and held-out set shrunk
    nature_resume_overrides: tuple[str, ...]
    resume_kill_after_epoch: int  # SIGKILL a moment after this epoch's snapshot lands
    glance_overrides: tuple[str, ...]  # of preset paper2013


GPU = Sizes(
    timing_s=2.0,
    replay_entries=100_000,
    loop_updates=2_000,
    graph_updates=100,
    sharing_games=PAPER_GAMES,
    sharing_replay_start_steps=1_000,
    sharing_epoch_updates=2_000,
    correctness_updates=500,
    # Epochs of 200 updates: at a GPU's rate, a kill 0.1 s after a snapshot still lands
    # mid-epoch (the ci preset's are 100, sized for the CPU). Minibatches of 32, the
    # presets' (ci's are 8), in both forms: these runs' steps/s with and without
    # cuda_deterministic compare at the presets' size, and on a fast CPU the CPU form's
    # last 30 steps outlast the 0.1 s.
    resume_overrides=("train_steps=1000", "epoch_updates=200", "minibatch_transitions=32"),
    # Epochs ending at each multiple of 800 steps, the target network refreshed every 500
    # (mid-epoch), epsilon down to 0.1 by step 1,200: the kill lands with a target older
    # than the weights.
    nature_resume_overrides=(
        "replay_start_steps=200",
        "train_steps=3200",
        "epoch_updates=200",
        "replay_capacity_transitions=3200",
        "heldout_collect_steps=300",
        "heldout_states=32",
        "epsilon_anneal_steps=1000",
        "target_update_period_steps=500",
    ),
    resume_kill_after_epoch=2,
    # 70,000 agent steps: 10,000 random, then 6 epochs of 10,000 updates.
    glance_overrides=(
        "replay_start_steps=10000",
        "epoch_updates=10000",
        "train_steps=70000",
        "replay_capacity_transitions=70000",
        "heldout_collect_steps=10000",
    ),
)
CPU = Sizes(
    timing_s=0.2,
    replay_entries=1_000,
    loop_updates=10,
    graph_updates=3,
    sharing_games=("Breakout", "Pong"),
    sharing_replay_start_steps=40,
    sharing_epoch_updates=10,
    correctness_updates=10,
    resume_overrides=(
        "train_steps=160",
        "replay_start_steps=100",
        "epoch_updates=15",
        "heldout_collect_steps=100",
        "minibatch_transitions=32",
    ),
    # Epochs of 100 steps (25 updates: past the 0.1 s to the kill on a fast CPU), the
    # target refreshed every 60.
    nature_resume_overrides=(
        "replay_start_steps=100",
        "train_steps=500",
        "epoch_updates=25",
        "replay_capacity_transitions=500",
        "heldout_collect_steps=100",
        "heldout_states=32",
        "epsilon_anneal_steps=200",
        "target_update_period_steps=60",
    ),
    resume_kill_after_epoch=2,
    glance_overrides=(
        "replay_start_steps=60",
        "epoch_updates=30",
        "train_steps=120",
        "replay_capacity_transitions=120",
        "heldout_collect_steps=100",
        "heldout_states=32",
    ),
)


def main(device_name: str, out: Path, started: float, install: dict) -> int:
    """Run every section on `device_name` ("cuda" or "cpu"); write SUMMARY and TABLE into
    `out`, SUMMARY with `install` (wheels.install_recorded's record). `started`: the
    time.monotonic() of the script's start, before the installation, from which the
    check's deadline counts (DEADLINE_S). 0 if every section ran (whatever it found), 1
    if one failed."""
    cuda = device_name == "cuda"
    if cuda and not torch.cuda.is_available():
        print(
            "scripts/device-check: no CUDA device here; use --device cpu for the CPU form",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    sizes = GPU if cuda else CPU
    if not cuda:
        # A smoke run, not a benchmark: one torch thread, as the test suite runs, so that
        # the form's jobs and a busy machine's other work do not starve each other.
        torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    deadline = started + DEADLINE_S
    summary = {
        "form": device.type,
        "install": install,
        "sizes": asdict(sizes),
        "deadline_s": DEADLINE_S,
        "section_wall_s": {},
    }
    try:
        run_sections(summary, out, device, sizes, deadline)
    finally:  # whatever ended the sections, the summary is written whole
        summary["goals"] = goals(summary)
        summary["wall_s"] = time.monotonic() - started
        write(summary, out)
    print((out / TABLE).read_text(), flush=True)
    failed = [
        name for name, value in summary.items() if isinstance(value, dict) and "error" in value
    ]
    return 1 if failed else 0


def run_sections(
    summary: dict, out: Path, device: torch.device, sizes: Sizes, deadline: float
) -> None:
    # Jobs kills the jobs before the folder is removed; a removal that trips all the same
    # (a file still being written) must not end the check before its summary is written.
    with (
        tempfile.TemporaryDirectory(prefix="dqn-device-check-", ignore_cleanup_errors=True) as tmp,
        Jobs(deadline) as group,
    ):
        root = Path(tmp)
        run_section(summary, out, "facts", lambda: facts(device))
        run_section(summary, out, "speed", lambda: speed(device, sizes))
        run_section(
            summary, out, "sharing", lambda: sharing(device, sizes, root / "sharing", deadline)
        )
        glance = group.start(
            train_command(GAME, "paper2013", root / "glance", device, sizes.glance_overrides),
            root / "glance.log",
        )
        run_section(
            summary, out, "correctness", lambda: correctness(device, sizes, root / "correctness")
        )
        run_section(
            summary, out, "resume", lambda: resume(device, sizes, root / "resume", deadline)
        )
        run_section(summary, out, "learning", lambda: learning(glance, root / "glance", device))


def run_section(summary: dict, out: Path, name: str, work) -> None:
    log(f"{name} ...")
    started = time.perf_counter()
    try:
        summary[name] = work()
    except Exception:  # noqa: BLE001 - one broken section must not lose the others
        summary[name] = {"error": traceback.format_exc()[-3000:]}
        log(f"{name} failed:\n{summary[name]['error']}")
    summary["section_wall_s"][name] = round(time.perf_counter() - started, 1)
    write(summary, out)
    log(f"{name} done in {summary['section_wall_s'][name]} s")


def log(message: str) -> None:
    print(f"[device-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write(summary: dict, out: Path) -> None:
    """Each file replaced whole (wheels.write_summary says why)."""
    wheels.write_summary(out, summary)
    atomic_write(out / TABLE, lambda tmp: tmp.write_text(markdown(summary)))


# -- facts --


def facts(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    properties = torch.cuda.get_device_properties(device) if cuda else None
    return {
        "device": str(device),
        "machine": machine(device),
        "device_memory_bytes": properties.total_memory if cuda else None,
        **nvidia_smi_facts(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "git_commit": provenance.git_commit(),
        # The tree travels without .git: the commit --prepare saw, where it ran.
        "prepared_at_commit": wheels.prepared_commit(),
        "requirements": requirement_versions(),
    }


def nvidia_smi_facts(device: torch.device) -> dict:
    """Which GPU nvidia-smi reads (nvidia_smi_gpu), its driver, and its compute mode: in
    Exclusive_Process the GPU takes one process at a time, so every job of the sharing and
    resume sections would fail while this process holds it."""
    gpu = nvidia_smi_gpu(device)
    rows = nvidia_smi(gpu, "--query-gpu=driver_version,compute_mode") if gpu else None
    driver, mode = rows[0] if rows and len(rows[0]) == 2 else (None, None)
    return {"nvidia_smi_gpu": gpu, "driver_version": driver, "compute_mode": mode}


def requirement_versions() -> dict:
    """Python and each dependency of pyproject.toml: installed version, bound, admitted."""
    project = tomllib.loads((wheels.ROOT / "pyproject.toml").read_text())["project"]
    python = platform.python_version()
    rows = {
        "python": {
            "installed": python,
            "bound": project["requires-python"],
            "admitted": SpecifierSet(project["requires-python"]).contains(python),
        }
    }
    for text in project["dependencies"]:
        requirement = Requirement(text)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            version = None
        rows[requirement.name] = {
            "installed": version,
            "bound": str(requirement.specifier),
            "admitted": version is not None
            and requirement.specifier.contains(version, prereleases=True),
        }
    return rows


def nvidia_smi(gpu: str, query: str) -> list[list[str]] | None:
    """nvidia-smi's answer to `query` about the GPU `gpu` (its -i, nvidia_smi_gpu) as rows
    of fields; None where it cannot answer."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        text = subprocess.run(
            ["nvidia-smi", "-i", gpu, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [
        [field.strip() for field in line.split(",")] for line in text.splitlines() if line.strip()
    ]


def nvidia_smi_gpu(device: torch.device) -> str | None:
    """How nvidia-smi's -i names `device`, so that its readings are of the GPU in use and of
    no other: "GPU-" and the UUID, which torch gives bare (nvidia-smi numbers the GPUs in
    its own order and reads no CUDA_VISIBLE_DEVICES), or the index where nvidia-smi knows
    no GPU of that UUID (a MIG instance's); None on the CPU, or where it answers neither."""
    if device.type != "cuda":
        return None
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    for gpu in (uuid if uuid.startswith("GPU-") else f"GPU-{uuid}", str(device.index)):
        if nvidia_smi(gpu, "--query-gpu=uuid"):
            return gpu
    return None


def reading(field: str) -> float | None:
    """A field of nvidia-smi's as a number; None where it gives none ("[N/A]" on a MIG
    instance or a virtual GPU, "[Not Supported]")."""
    try:
        return float(field)
    except ValueError:
        return None


class GpuSampler:
    """nvidia-smi's utilisation and memory of the GPU `gpu` (nvidia_smi_gpu), and each
    process's memory on it, sampled every SAMPLE_S in a thread while the block runs
    (nothing where `gpu` is None), and the memory used as it begins; a field without a
    number is left out of its figures."""

    def __init__(self, gpu: str | None):
        self.gpu = gpu

    def __enter__(self) -> GpuSampler:
        self.samples, self.utilisation, self.memory_mib, self.process_mib = 0, [], [], {}
        self.memory_before_mib = self._readings()[1] if self.gpu is not None else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        if self.gpu is not None:
            self.thread.start()
        return self

    def _readings(self) -> tuple[float | None, float | None]:
        """The GPU's utilisation and memory used now."""
        rows = nvidia_smi(self.gpu, "--query-gpu=utilization.gpu,memory.used") or []
        # One row of two fields: anything else is no answer to the query.
        if len(rows) != 1 or len(rows[0]) != 2:
            return None, None
        utilisation, memory = map(reading, rows[0])
        return utilisation, memory

    def _sample(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            self.samples += 1
            utilisation, memory = self._readings()
            if utilisation is not None:
                self.utilisation.append(utilisation)
            if memory is not None:
                self.memory_mib.append(memory)
            for row in nvidia_smi(self.gpu, "--query-compute-apps=pid,used_memory") or []:
                memory = reading(row[1]) if len(row) == 2 and row[0].isdigit() else None
                if memory is not None:
                    pid = int(row[0])
                    self.process_mib[pid] = max(self.process_mib.get(pid, 0.0), memory)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def summary(self) -> dict | None:
        if not (self.utilisation or self.memory_mib):
            return None
        return {
            "samples": self.samples,
            "utilisation_percent_mean": float(np.mean(self.utilisation))
            if self.utilisation
            else None,
            "utilisation_percent_max": max(self.utilisation, default=None),
            "memory_used_mib_before": self.memory_before_mib,
            "memory_used_mib_max": max(self.memory_mib, default=None),
        }

    def memory_per_job_mib(self, jobs: int) -> float | None:
        """What the block added to the GPU's memory used at its peak, shared among `jobs`:
        each job's memory where nvidia-smi's processes do not match the jobs (its PIDs are
        of another PID namespace in a container)."""
        if self.memory_before_mib is None or not self.memory_mib:
            return None
        return (max(self.memory_mib) - self.memory_before_mib) / jobs


# -- speed --


def speed(device: torch.device, sizes: Sizes) -> dict:
    emulator = bench.environment_figures(GAME, sizes.timing_s)["raw_emulator_agent_steps_per_s"]
    memory, n_actions = bench.filled_memory(GAME, sizes.replay_entries)
    batch = memory.sample(presets.PAPER2013.minibatch_transitions, np.random.default_rng(0))
    rates = bench.update_rates(PRESETS, batch, n_actions, device, sizes.timing_s)
    learner = Learner(presets.PAPER2013, n_actions, device, bench.SEED)
    greedy_ms = bench.greedy_action_ms(learner.network, batch.states[0], device, sizes.timing_s / 2)
    sample_ms = bench.sample_to_device_ms(memory, learner, sizes.timing_s / 2)
    figures = {
        "emulator_agent_steps_per_s": emulator,
        "greedy_action_ms": greedy_ms,
        "greedy_action_vs_emulator_step": greedy_ms / 1000 * emulator,
        "sample_to_device_ms": sample_ms,
        "sample_to_device_vs_emulator_step": sample_ms / 1000 * emulator,
    }
    for name in PRESETS:
        loop = bench.preset_loop_figures(GAME, name, device, sizes.loop_updates)
        figures[name] = {
            "updates_per_s": rates[name],
            "updates_vs_emulator": rates[name] / emulator,
            "loop_agent_steps_per_s": loop["agent_steps_per_s"],
            "loop_vs_emulator": loop["agent_steps_per_s"] / emulator,
            "loop_updates_per_s": loop["updates_per_s"],
        }
    # CUDA's variants, each apart: one that fails on the GPU leaves its error, not a gap.
    # On the CPU they run the plain path (the keys act on CUDA only), so that their code
    # runs in the test suite too; their ratios mean nothing there.
    loops = {name: figures[name]["loop_agent_steps_per_s"] for name in PRESETS}
    figures["cuda_graph"] = attempt(
        lambda: cuda_graph_figures(memory, batch, n_actions, device, sizes, loops)
    )
    figures["deterministic"] = attempt(
        lambda: deterministic_figures(batch, n_actions, device, sizes)
    )
    figures["pageable_copies"] = attempt(lambda: pageable_figures(device, sizes, loops))
    return figures


def attempt(work) -> dict:
    try:
        return work()
    except Exception:  # noqa: BLE001 - recorded, and the check goes on
        return {"error": traceback.format_exc()[-3000:]}


def cuda_graph_figures(
    memory, batch, n_actions: int, device: torch.device, sizes: Sizes, plain_loops: dict[str, float]
) -> dict:
    """cuda_graph_update against the plain update: updates/s alternated in slices, the
    loop's agent steps/s, and the weights after the same minibatches."""
    configs = {}
    for name, config in PRESETS.items():
        configs[name] = config
        configs[f"{name}_graph"] = config.with_values(cuda_graph_update=True)
    rates = bench.update_rates(configs, batch, n_actions, device, sizes.timing_s)
    figures = {}
    for name in PRESETS:
        loop = bench.preset_loop_figures(
            GAME, name, device, sizes.loop_updates, ("cuda_graph_update=true",)
        )["agent_steps_per_s"]
        figures[name] = {
            "updates_per_s": rates[f"{name}_graph"],
            "updates_vs_plain": rates[f"{name}_graph"] / rates[name],
            "loop_agent_steps_per_s": loop,
            "loop_vs_plain": loop / plain_loops[name],
        }
    figures.update(graph_agreement(memory, n_actions, device, sizes.graph_updates))
    return figures


def graph_agreement(memory, n_actions: int, device: torch.device, updates: int) -> dict:
    """Two plain learners and one with cuda_graph_update on the same minibatches, the
    target network refreshed every 10 updates: do the weights agree bit for bit? (Two
    plain ones tell whether the update itself is deterministic here.) `_graph_captured`
    says whether the third ran as a CUDA graph: on the CPU it runs the plain update."""
    rng = np.random.default_rng(1)
    batches = [memory.sample(32, rng) for _ in range(updates)]
    agreement = {"compared_updates": updates}
    for name, config in PRESETS.items():
        learners = [
            Learner(config.with_values(cuda_graph_update=graphed), n_actions, device, bench.SEED)
            for graphed in (False, False, True)
        ]
        for update, batch in enumerate(batches, start=1):
            for learner in learners:
                learner.update(batch)
                if update % 10 == 0:
                    learner.after_step(1)  # a refresh (Nature's target network)
        graph = learners[2].graph
        agreement[f"{name}_graph_captured"] = graph is not None and graph.graph is not None
        # detached: a difference of weights that require grad warns when read as a float
        plain, again, graphed = (
            [weight.detach() for weight in learner.network.parameters()] for learner in learners
        )
        for label, other in (("plain_again", again), ("graph", graphed)):
            difference = max(float((a - b).abs().max()) for a, b in zip(plain, other))
            agreement[f"{name}_{label}_max_abs_weight_difference"] = difference
            agreement[f"{name}_{label}_identical"] = difference == 0.0
    return agreement


def deterministic_figures(batch, n_actions: int, device: torch.device, sizes: Sizes) -> dict:
    """cuda_deterministic's cost: updates/s with and without torch's deterministic
    algorithms, alternated in slices, and the paper2013 loop with the key."""
    configs = {}
    for name, config in PRESETS.items():
        configs[name] = config
        configs[f"{name}_deterministic"] = config
    rates = bench.update_rates(
        configs,
        batch,
        n_actions,
        device,
        sizes.timing_s,
        deterministic=tuple(f"{name}_deterministic" for name in PRESETS),
    )
    figures = {
        name: {
            "updates_per_s": rates[f"{name}_deterministic"],
            "updates_vs_default": rates[f"{name}_deterministic"] / rates[name],
        }
        for name in PRESETS
    }
    with restored_determinism():
        loop = bench.preset_loop_figures(
            GAME, "paper2013", device, sizes.loop_updates, ("cuda_deterministic=true",)
        )
    figures["paper2013"]["loop_agent_steps_per_s"] = loop["agent_steps_per_s"]
    return figures


def pageable_figures(device: torch.device, sizes: Sizes, pinned_loops: dict[str, float]) -> dict:
    """The loop with minibatches copied from pageable host memory, against pinned."""
    figures = {}
    for name in PRESETS:
        with pageable_minibatches():
            pageable = bench.preset_loop_figures(GAME, name, device, sizes.loop_updates)
        figures[name] = {
            "loop_agent_steps_per_s": pageable["agent_steps_per_s"],
            "pinned_vs_pageable": pinned_loops[name] / pageable["agent_steps_per_s"],
        }
    return figures


@contextmanager
def restored_determinism():
    """cuda_deterministic sets process-wide state (torch's flag, cuBLAS's workspace
    variable): put it back after a run that turns it on. In this process cuBLAS started
    before, with its default workspace; the flag and the variable are what torch checks."""
    variable = os.environ.get(CUBLAS_WORKSPACE)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        if variable is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)


@contextmanager
def pageable_minibatches():
    """The learner's minibatches copied to the device from pageable host memory."""
    Learner.pin_minibatches = False
    try:
        yield
    finally:
        Learner.pin_minibatches = True


# -- sharing --


def sharing(device: torch.device, sizes: Sizes, root: Path, deadline: float) -> dict:
    """Each game trained alone (in this process), then all at once, each in a `dqn
    train` process claiming one of `len(games)` slots of the GPU as the workflow's jobs
    do; the second of two epochs is timed."""
    check_time_left(deadline)
    games = sizes.sharing_games
    start, epoch = sizes.sharing_replay_start_steps, sizes.sharing_epoch_updates
    overrides = (
        f"replay_start_steps={start}",
        f"epoch_updates={epoch}",
        f"train_steps={start + 2 * epoch}",
        f"replay_capacity_transitions={start + 2 * epoch}",
        "epsilon_anneal_steps=0",
        "heldout_collect_steps=100",
        "heldout_states=32",
    )
    config = presets.load("paper2013", list(overrides))
    threads = max(1, len(os.sched_getaffinity(0)) // len(games))
    alone, gpu_alone = {}, None
    gpu = nvidia_smi_gpu(device)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for game in games:
            with GpuSampler(gpu) as sampler:
                training.train(
                    game,
                    "paper2013",
                    config,
                    0,
                    root / "alone" / game,
                    device,
                    progress_s=float("inf"),
                )
            alone[game] = timed_steps_per_s(root / "alone" / game)
            gpu_alone = gpu_alone or sampler.summary()
    finally:
        torch.set_num_threads(default_threads)
    with GpuSampler(gpu) as sampler, Jobs(deadline) as group:
        jobs = {
            game: group.start(
                train_command(
                    game,
                    "paper2013",
                    root / "shared" / game,
                    device,
                    overrides,
                    jobs_per_gpu=len(games),
                    threads=threads,
                ),
                root / f"shared_{game}.log",
            )
            for game in games
        }
        # Each waited for, a failed one too: the failures are the section's error, the
        # others' figures are kept.
        failures = {game: failure for game, job in jobs.items() if (failure := job.failure())}
    shared = {
        game: timed_steps_per_s(root / "shared" / game) for game in games if game not in failures
    }
    ratios = {game: shared[game] / alone[game] for game in shared}
    figures = {
        "games": list(games),
        "threads_per_job": threads,
        "timed_updates_per_job": epoch,
        "alone_agent_steps_per_s": alone,
        "shared_agent_steps_per_s": shared,
        "shared_vs_alone": ratios,
        # Of every job, or none: a failed job's rate is not known.
        "worst_shared_vs_alone": min(ratios.values()) if not failures else None,
        "shared_agent_steps_per_s_total": sum(shared.values()),
        "gpu_alone_first_game": gpu_alone,
        "gpu_shared": sampler.summary(),
        "gpu_memory_mib_per_job": {
            game: sampler.process_mib.get(job.process.pid) for game, job in jobs.items()
        },
        "gpu_memory_mib_per_job_from_device_total": sampler.memory_per_job_mib(len(games)),
        "gpu_memory_mib_per_process_seen": sampler.process_mib,
    }
    if failures:
        figures["error"] = "\n\n".join(f"{game}: {failure}" for game, failure in failures.items())
    return figures


def timed_steps_per_s(run_root: Path) -> float:
    """The agent steps/s of a run's last epoch."""
    _, log_ = h5io.read(RunDir(run_root).log, "train_log")
    return float(log_["epochs/steps_per_s"][-1])


# -- processes: `dqn train` as the workflow runs it --


def train_command(
    game: str,
    preset: str,
    out: Path,
    device: torch.device,
    overrides: tuple[str, ...] = (),
    jobs_per_gpu: int = 16,
    threads: int = 1,
) -> list[str]:
    """The `dqn train` command of a job. jobs_per_gpu: the GPU's slots (dqn.devices), 16
    by default so that the resume section's twelve runs and the glance share it."""
    sets = [arg for override in overrides for arg in ("--set", override)]
    return [
        sys.executable,
        "-m",
        "dqn.cli",
        "train",
        "--game",
        game,
        "--preset",
        preset,
        "--seed",
        "0",
        "--out",
        str(out),
        "--device",
        device.type,
        "--jobs-per-gpu",
        str(jobs_per_gpu),
        "--threads",
        str(threads),
        "--progress-s",
        "600",
        *sets,
    ]


def check_time_left(deadline: float) -> None:
    """Refuse to start a section's jobs once the check's deadline has passed: each wait for
    them would end at once, and they would be killed unmeasured."""
    if time.monotonic() >= deadline:
        raise RuntimeError(f"not run: the check's deadline ({DEADLINE_S} s) had passed")


class Jobs:
    """The `dqn train` processes a block starts (`start`), each waited for until the
    check's `deadline` at most (a time.monotonic()), and each killed and reaped as the
    block ends if it is still running, whatever happened in it: a job left running keeps
    its slot of the GPU, so that later jobs wait for one (dqn.devices.claim_gpu), and
    writes on into a folder that is being removed."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __enter__(self) -> Jobs:
        self.started: list[Job] = []
        return self

    def start(self, command: list[str], log_path: Path) -> Job:
        job = Job(command, log_path, self.deadline)
        self.started.append(job)
        return job

    def __exit__(self, *exc) -> None:
        for job in self.started:
            job.kill()


class Job:
    """A `dqn train` process, its output in a log file (started by Jobs.start), waited
    for until `deadline` at most."""

    def __init__(self, command: list[str], log_path: Path, deadline: float):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.command, self.log_path, self.deadline = command, log_path, deadline
        with open(log_path, "ab") as output:
            self.process = subprocess.Popen(
                command, cwd=wheels.ROOT, stdout=output, stderr=subprocess.STDOUT
            )

    def left_s(self) -> float:
        """How long a wait that begins now may last: JOB_TIMEOUT_S, or to the deadline."""
        return max(0.0, min(JOB_TIMEOUT_S, self.deadline - time.monotonic()))

    def ended(self) -> int | None:
        """Wait for the job to end (left_s at most); its exit status, None if it runs on."""
        try:
            return self.process.wait(timeout=self.left_s())
        except subprocess.TimeoutExpired:
            return None

    def failure(self) -> str | None:
        """Wait for the job to end (left_s at most: then it is killed); None if it exited
        with 0, else what went wrong, with its output."""
        waited = time.monotonic()
        status = self.ended()
        if status is None:
            self.kill()
            return (
                f"{' '.join(self.command)}: still running after {time.monotonic() - waited:.0f}"
                f" s of waiting (JOB_TIMEOUT_S, or the check's deadline), killed; its "
                f"output:\n{self.tail()}"
            )
        if status != 0:
            return f"{' '.join(self.command)} exited with {status}; its output:\n{self.tail()}"
        return None

    def stop(self) -> int:
        """SIGTERM, on which `dqn train` saves an interrupt file and exits (143), then
        SIGKILL if it is still running STOP_GRACE_S later; its exit status."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL if it is still running; its exit status, the process reaped."""
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]


# -- correctness --


def correctness(device: torch.device, sizes: Sizes, root: Path) -> dict:
    """The same training on the CPU and on `device`, epsilon 1 throughout (the same
    actions, replay memory and minibatches: only the arithmetic differs), against the
    tolerances above: on CUDA, with and without TF32; on the CPU, another thread count
    (the reduction order alone)."""
    start, updates = 200, sizes.correctness_updates
    config = presets.load(
        "paper2013",
        [
            f"replay_start_steps={start}",
            f"train_steps={start + updates}",
            f"epoch_updates={updates}",
            f"replay_capacity_transitions={start + updates}",
            "epsilon_start=1.0",
            "epsilon_end=1.0",
            "heldout_collect_steps=300",
            "heldout_states=100",
        ],
    )
    cpu = torch.device("cpu")
    usable = len(os.sched_getaffinity(0))
    runs = {"cpu": (cpu, usable, True), "cpu_other_threads": (cpu, 1 if usable > 1 else 2, True)}
    if device.type == "cuda":
        runs.update({"cuda": (device, usable, True), "cuda_without_tf32": (device, usable, False)})
    for name, (run_device, threads, tf32) in runs.items():
        with torch_settings(threads, tf32):
            training.train(
                GAME,
                "paper2013",
                config,
                0,
                root / name,
                run_device,
                progress_s=float("inf"),
                live_view=False,
            )
    states = h5io.read(RunDir(root / "cpu").heldout, "heldout")[1]["states"]
    n_actions = make_env(GAME, config, 0).n_actions
    reference = final_network(root / "cpu", n_actions)
    reference_q = average_max_q(reference, states, cpu)
    reference_log = h5io.read(RunDir(root / "cpu").log, "train_log")[1]
    figures = {
        "updates": updates,
        "average_max_q": {},
        "relative_difference": {},
        "weights_relative_difference": {},
        "same_episodes": {},
    }
    for name in runs:
        network = final_network(root / name, n_actions)
        q = average_max_q(network, states, cpu)
        figures["average_max_q"][name] = q
        figures["relative_difference"][name] = abs(q - reference_q) / abs(reference_q)
        figures["weights_relative_difference"][name] = weights_distance(network, reference)
        run_log = h5io.read(RunDir(root / name).log, "train_log")[1]
        figures["same_episodes"][name] = bool(
            np.array_equal(run_log["episodes/return"], reference_log["episodes/return"])
        )
    tolerances = (
        {"cuda": TF32_TOLERANCE, "cuda_without_tf32": FP32_TOLERANCE}
        if device.type == "cuda"
        else {"cpu_other_threads": FP32_TOLERANCE}
    )
    figures["tolerances"] = tolerances
    figures["within_tolerance"] = all(
        figures["relative_difference"][name] <= tolerance for name, tolerance in tolerances.items()
    )
    return figures


@contextmanager
def torch_settings(threads: int, tf32: bool):
    saved = (torch.get_num_threads(), torch.backends.cudnn.allow_tf32)
    torch.set_num_threads(threads)
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def final_network(run_root: Path, n_actions: int) -> torch.nn.Module:
    run = TrainedRun.open(run_root)
    return run.network(run.epochs[-1], n_actions, torch.device("cpu"))[0]


def weights_distance(network: torch.nn.Module, reference: torch.nn.Module) -> float:
    """|w - w_ref| / |w_ref| over all weights, in float64."""
    ours = torch.cat([p.detach().double().flatten() for p in network.parameters()])
    theirs = torch.cat([p.detach().double().flatten() for p in reference.parameters()])
    return float((ours - theirs).norm() / theirs.norm())


# -- resume --


# The resume section's modes, in the order of the summary: the ci preset's runs and the
# nature2015 ones, each on CUDA also with cuda_deterministic.
RESUME_MODES = ("default", "deterministic", "nature2015", "nature2015_deterministic")


def resume_modes(sizes: Sizes, cuda: bool) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The resume section's modes: (preset, overrides) by name (RESUME_MODES)."""
    plain = {
        "default": ("ci", sizes.resume_overrides),
        "nature2015": ("nature2015", sizes.nature_resume_overrides),
    }
    deterministic = {
        "deterministic": ("ci", (*sizes.resume_overrides, "cuda_deterministic=true")),
        "nature2015_deterministic": (
            "nature2015",
            (*sizes.nature_resume_overrides, "cuda_deterministic=true"),
        ),
    }
    modes = {**plain, **deterministic} if cuda else plain
    return {mode: modes[mode] for mode in RESUME_MODES if mode in modes}


def resume(device: torch.device, sizes: Sizes, root: Path, deadline: float) -> dict:
    """Per mode (`resume_modes`): run A uninterrupted, run C killed with SIGKILL mid-epoch
    and run again to the end, and on CUDA run B, A's rerun (the CPU's reruns are
    bit-identical, tests/test_train.py), all at once; then C's and B's snapshots against
    A's, bit for bit."""
    check_time_left(deadline)
    cuda = device.type == "cuda"
    modes = resume_modes(sizes, cuda)
    runs = ("A", "B", "C") if cuda else ("A", "C")

    def command(mode: str, run: str) -> list[str]:
        preset, overrides = modes[mode]
        return train_command(GAME, preset, root / mode / run, device, overrides)

    with Jobs(deadline) as group:
        jobs = {
            (mode, run): group.start(command(mode, run), root / f"{mode}_{run}.log")
            for mode in modes
            for run in runs
        }
        killed = kill_after_snapshot(
            {mode: jobs[mode, "C"] for mode in modes}, sizes.resume_kill_after_epoch, root
        )
        for mode in modes:
            jobs[mode, "C"] = group.start(command(mode, "C"), root / f"{mode}_C.log")
        # Every run waited for, a failed one too; a mode that fails (an operation without
        # a deterministic form) says why.
        failures = {
            mode: [failure for run in runs if (failure := jobs[mode, run].failure())]
            for mode in modes
        }
    results = {}
    for mode in modes:
        if failures[mode]:
            results[mode] = {"failed": failures[mode]}
            continue
        reference = RunDir(root / mode / "A")
        resumed = max_snapshot_difference(RunDir(root / mode / "C"), reference)
        results[mode] = {
            "killed_mid_run": killed[mode],
            "resumed_from_snapshot": "resumed from" in jobs[mode, "C"].tail(),
            "resumed_identical": resumed == 0.0,
            "resumed_max_abs_weight_difference": resumed,
            "agent_steps_per_s": timed_steps_per_s(reference.root),
            # the ends of episode the runs met (with nature2015, each followed by a
            # step of its own), and of those the lost lives that did not end the game
            **episode_ends(reference),
        }
        if cuda:
            rerun = max_snapshot_difference(RunDir(root / mode / "B"), reference)
            results[mode].update(
                rerun_identical=rerun == 0.0, rerun_max_abs_weight_difference=rerun
            )
    # The plain modes' failures are the section's error; a deterministic mode's is a
    # finding (an operation without a deterministic form).
    if failed := [
        "\n\n".join(results[mode]["failed"])
        for mode in modes
        if not mode.endswith("deterministic") and "failed" in results[mode]
    ]:
        results["error"] = "\n\n".join(failed)
    return results


def episode_ends(run: RunDir) -> dict:
    """The run's training episodes, and those that ended with a lost life, not the game."""
    _, log_ = h5io.read(run.log, "train_log")
    return {
        "episodes": len(log_["episodes/return"]),
        "lost_lives": int(np.sum(log_["episodes/game_over"] == 0)),
    }


def kill_after_snapshot(
    jobs: dict[str, Job], epoch: int, root: Path, delay_s: float = 0.1
) -> dict[str, bool]:
    """SIGKILL each job `delay_s` after its run's snapshot of `epoch` lands; whether it
    was still running then. Watched for as long as the jobs may be waited for (left_s)."""
    seen, killed = {}, {}
    until = time.monotonic() + min(job.left_s() for job in jobs.values())
    while len(killed) < len(jobs) and time.monotonic() < until:
        for mode, job in jobs.items():
            if mode in killed:
                continue
            if job.process.poll() is not None:
                killed[mode] = False
            elif RunDir(root / mode / "C").snapshot(epoch).exists():
                seen.setdefault(mode, time.monotonic())
                if time.monotonic() - seen[mode] >= delay_s:
                    job.process.send_signal(signal.SIGKILL)
                    killed[mode] = job.process.wait() == -signal.SIGKILL
        time.sleep(0.01)
    for mode, job in jobs.items():  # out of time before its snapshot: stopped, not resumed
        if mode not in killed:
            job.kill()
    return {mode: killed.get(mode, False) for mode in jobs}


def max_snapshot_difference(run: RunDir, reference: RunDir) -> float:
    """The largest |difference| between the weights of the two runs' snapshots, over every
    snapshot of `reference` (inf where `run` lacks one)."""
    largest = 0.0
    for epoch in reference.snapshot_epochs():
        if not run.snapshot(epoch).exists():
            return math.inf
        ours = h5io.read(run.snapshot(epoch), "snapshot")[1]
        theirs = h5io.read(reference.snapshot(epoch), "snapshot")[1]
        for name, value in theirs.items():
            if name.startswith("weights/"):
                difference = np.abs(ours[name].astype(np.float64) - value).max()
                largest = max(largest, float(difference))
    return largest


# -- the learning glance --


def learning(glance: Job, run_root: Path, device: torch.device) -> dict:
    """The held-out average max-Q of each snapshot of the glance's run. A glance still
    running when the wait for it runs out (Job.left_s: JOB_TIMEOUT_S, or the check's
    deadline) is stopped (Job.stop) and the snapshots it made are scored: cut_short, and
    stopped_with its exit status (143: it saved an interrupt file)."""
    cut_short, stopped_with = glance.ended() is None, None
    if cut_short:
        stopped_with = glance.stop()
        if not RunDir(run_root).snapshot_epochs():
            raise RuntimeError(
                f"the glance, stopped when the wait for it ran out (JOB_TIMEOUT_S, or the "
                f"check's deadline; exit {stopped_with}), made no snapshot; its output:\n"
                f"{glance.tail()}"
            )
    elif failure := glance.failure():
        raise RuntimeError(failure)
    run = TrainedRun.open(run_root)
    states = run.heldout_states()
    n_actions = make_env(GAME, run.config, 0).n_actions
    steps, values = [], []
    for epoch in run.epochs:
        network, snapshot = run.network(epoch, n_actions, device)
        steps.append(int(snapshot["step"]))
        values.append(average_max_q(network, states, device))
    _, log_ = h5io.read(run.dir.log, "train_log")
    # With rewards clipped to [-1, 1], no return exceeds 1 / (1 - discount) in size.
    bound = 1 / (1 - run.config.discount)
    return {
        "game": GAME,
        "preset": "paper2013",
        "cut_short": cut_short,
        "stopped_with": stopped_with,
        "steps": steps,
        "average_max_q": values,
        "bound": bound,
        "bounded": all(math.isfinite(q) and abs(q) < bound for q in values),
        "rises": len(values) > 1 and values[-1] > values[0],
        "agent_steps_per_s": [float(v) for v in log_["epochs/steps_per_s"]],
        "episodes": int(len(log_["episodes/return"])),
        "episode_return_mean_last_20": float(np.mean(log_["episodes/return"][-20:]))
        if len(log_["episodes/return"])
        else None,
    }


# -- the goals, and the table --


def goals(summary: dict) -> list[dict]:
    """The goals and the checks, each with its value and whether it is met (None:
    not measured, as in the CPU form, where the GPU's goals do not apply)."""
    cuda = summary["form"] == "cuda"

    def get(*path):
        value = summary
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def row(name, value, goal, met, applies=True):
        return {
            "check": name,
            "value": value,
            "goal": goal,
            "met": None if value is None or not applies else bool(met),
        }

    nature = get("speed", "nature2015", "loop_agent_steps_per_s")
    nature_graph = get("speed", "cuda_graph", "nature2015", "loop_agent_steps_per_s")
    paper = get("speed", "paper2013", "updates_per_s")
    paper_graph = get("speed", "cuda_graph", "paper2013", "updates_per_s")
    shared = get("sharing", "worst_shared_vs_alone")
    rows = [
        # The GPU's goals: on the CPU form, measured but not judged.
        row(
            "nature2015: loop agent steps/s, one job",
            nature,
            f">= {NATURE_STEPS_PER_S_GOAL:,}",
            nature is not None and nature >= NATURE_STEPS_PER_S_GOAL,
            cuda,
        ),
        row(
            "nature2015: the same with cuda_graph_update",
            nature_graph,
            f">= {NATURE_STEPS_PER_S_GOAL:,}",
            nature_graph is not None and nature_graph >= NATURE_STEPS_PER_S_GOAL,
            cuda,
        ),
        row(
            "paper2013: updates/s",
            paper,
            f">= {PAPER_UPDATES_PER_S_GOAL:,}",
            paper is not None and paper >= PAPER_UPDATES_PER_S_GOAL,
            cuda,
        ),
        row(
            "paper2013: the same with cuda_graph_update",
            paper_graph,
            f">= {PAPER_UPDATES_PER_S_GOAL:,}",
            paper_graph is not None and paper_graph >= PAPER_UPDATES_PER_S_GOAL,
            cuda,
        ),
        row(
            f"{len(get('sharing', 'games') or [])} jobs sharing: worst job's rate / alone",
            shared,
            f">= {SHARED_VS_ALONE_GOAL}",
            shared is not None and shared >= SHARED_VS_ALONE_GOAL,
            cuda,
        ),
    ]
    for name, tolerance in (get("correctness", "tolerances") or {}).items():
        rows.append(
            row(
                f"average max-Q after {get('correctness', 'updates')} updates, "
                f"{name} vs CPU (relative)",
                get("correctness", "relative_difference", name),
                f"<= {tolerance:g}",
                get("correctness", "relative_difference", name) <= tolerance,
            )
        )
    for mode in RESUME_MODES:
        identical = get("resume", mode, "resumed_identical")
        rows.append(
            row(
                f"SIGKILL and resume: same weights ({mode})",
                get("resume", mode, "resumed_max_abs_weight_difference"),
                "0 (bit-identical)",
                identical,
            )
        )
    # The CPU form's glance is too short to learn: measured, not judged.
    rows.append(
        row(
            "learning glance: average max-Q bounded and rising",
            get("learning", "average_max_q"),
            "bounded, last > first",
            get("learning", "bounded") and get("learning", "rises"),
            cuda,
        )
    )
    return rows


def markdown(summary: dict) -> str:
    facts_ = summary.get("facts", {})
    machine_ = facts_.get("machine", {})
    lines = [
        f"# Device check ({summary['form']} form)",
        "",
        f"{machine_.get('device')} (CPU {machine_.get('cpu')}), torch "
        f"{facts_.get('torch_version')}, CUDA {facts_.get('cuda_version')}, "
        f"driver {facts_.get('driver_version')}, "
        f"{facts_.get('cpu_count')} CPUs, commit {facts_.get('git_commit')} "
        f"(prepared at {facts_.get('prepared_at_commit')})",
        "",
        "| check | value | goal | met |",
        "|---|---|---|---|",
    ]
    for goal in summary.get("goals") or goals(summary):
        lines.append(
            f"| {goal['check']} | {number(goal['value'])} | {goal['goal']} | "
            f"{'-' if goal['met'] is None else 'yes' if goal['met'] else 'NO'} |"
        )
    speed_ = summary.get("speed", {})
    if "emulator_agent_steps_per_s" in speed_:
        emulator = speed_["emulator_agent_steps_per_s"]
        lines += [
            "",
            "| speed | value | / emulator (one core) |",
            "|---|---|---|",
            f"| bare emulator, agent steps/s | {number(emulator)} | 1 |",
        ]
        for name in ("paper2013", "nature2015"):
            lines += [
                f"| {name}: updates/s | {number(speed_[name]['updates_per_s'])} | "
                f"{number(speed_[name]['updates_vs_emulator'])} |",
                f"| {name}: loop agent steps/s | "
                f"{number(speed_[name]['loop_agent_steps_per_s'])} | "
                f"{number(speed_[name]['loop_vs_emulator'])} |",
            ]
        for name in PRESETS:
            pageable = (speed_.get("pageable_copies") or {}).get(name)
            graph = (speed_.get("cuda_graph") or {}).get(name)
            deterministic = (speed_.get("deterministic") or {}).get(name)
            if pageable:
                lines.append(
                    f"| {name}: loop agent steps/s, minibatches from pageable "
                    f"memory | {number(pageable['loop_agent_steps_per_s'])} | "
                    f"{number(pageable['loop_agent_steps_per_s'] / emulator)} |"
                )
            if graph:
                lines.append(
                    f"| {name}: with cuda_graph_update, updates/s / loop agent "
                    f"steps/s | {number(graph['updates_per_s'])} / "
                    f"{number(graph['loop_agent_steps_per_s'])} | "
                    f"{number(graph['loop_agent_steps_per_s'] / emulator)} |"
                )
            if deterministic:
                lines.append(
                    f"| {name}: updates/s with cuda_deterministic | "
                    f"{number(deterministic['updates_per_s'])} | "
                    f"{number(deterministic['updates_per_s'] / emulator)} |"
                )
        lines += [
            f"| greedy action, ms | {number(speed_['greedy_action_ms'])} | "
            f"{number(speed_['greedy_action_vs_emulator_step'])} of a step |",
            f"| minibatch draw and copy to the device, ms | "
            f"{number(speed_['sample_to_device_ms'])} | "
            f"{number(speed_['sample_to_device_vs_emulator_step'])} of a step |",
        ]
    errors = [
        name for name, value in summary.items() if isinstance(value, dict) and "error" in value
    ]
    if errors:
        lines += ["", f"Sections that failed (their errors are in {SUMMARY}): {', '.join(errors)}"]
    return "\n".join(lines) + "\n"


def number(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(number(v) for v in value)
    return str(value)
